"""Inference: reading pixels as a radiologist sees them, the model registry and the runner."""
