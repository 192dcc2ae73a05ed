"""Synthetic mammograms with known ground truth, for tests, demos and the synthetic model."""
