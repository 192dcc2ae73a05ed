"""Errors of dataset import, split and report."""

from __future__ import annotations

from node.errors import FinalError


class DatasetError(FinalError):
    """A dataset folder, manifest or source that cannot be used, with the reason."""
