"""Small helpers the whole package shares: crash-safe writes, pairs and image lists, error types."""
