"""Errors of training configuration and runs."""

from __future__ import annotations

from node.errors import FinalError


class TrainingError(FinalError):
    """A training config or run that cannot go on, with the reason."""
