"""End-to-end recipes: reconstruct and localize photos, the Aachen and InLoc benchmarks and the demo;
each a module with `main` and a `command` (`sfm-reweight NAME`)."""
