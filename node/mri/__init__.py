"""Breast MRI: the synthetic DCE phantom (assembly, kinetics and writers follow)."""
