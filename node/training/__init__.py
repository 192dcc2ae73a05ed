"""Training MONAI models on a dataset folder into a model folder the node serves unchanged."""
