"""Breast MRI: DCE phantom, assembly and kinetic analysis (writers follow)."""
