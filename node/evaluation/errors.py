"""Errors of evaluation."""

from __future__ import annotations

from node.errors import FinalError


class EvaluationRefused(FinalError):
    """The evaluation would be dishonest (images the model trained on) or impossible."""
