"""Shared test set-up: strict when writing, as highdicom's own tests are."""

from __future__ import annotations

from collections.abc import Iterator

import pydicom.config
import pytest


@pytest.fixture(autouse=True)
def _strict_dicom_writing() -> Iterator[None]:
    """Make pydicom raise on any invalid value written (VR length, charset, format)."""
    settings = pydicom.config.settings
    previous = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom.config.RAISE
    yield
    settings.writing_validation_mode = previous
