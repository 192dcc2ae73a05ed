"""Evaluation of a model folder on a dataset split it never trained on."""
