"""Datasets for training and evaluation: import (mini-MIAS, DICOM, CBIS-DDSM), de-identification,
quality control, patient-level splits and reports, all into one manifest layout."""
