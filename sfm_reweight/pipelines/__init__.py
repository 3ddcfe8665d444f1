"""End-to-end recipes: reconstruct and localize photos, the Aachen and InLoc benchmarks, the two-view benchmarks, the
demo and the reweighting ablation; each a module with `main` and a `command` (`sfm-reweight NAME`)."""
