"""Scenes and images the package makes itself (nothing to download): the rendered demo square, the
renderer of textured planar scenes, and the embedded sample pair."""
