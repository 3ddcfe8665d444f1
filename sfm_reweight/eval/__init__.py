"""Evaluation: datasets with ground truth, accuracy metrics, the matchers compared in the benchmarks,
the benchmarks' shared machinery, and the scoring of reconstructions."""
