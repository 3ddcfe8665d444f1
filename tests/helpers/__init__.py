"""Helpers of the tests (and of benchmarks/matcher_speed.py), not of the package: a randomly
initialised network made to match like a trained one (`calibration`), and the official EfficientLoFTR
code as the numerical reference (`official`). Tests import them as `from helpers.calibration import ...`
(pytest puts this folder's parent, tests/, on sys.path)."""
