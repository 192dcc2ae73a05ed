"""The retry policy shared by jobs and deliveries: exponential backoff, capped.

One function, so a job's retry and a delivery's retry can never drift apart.
"""

from __future__ import annotations


def backoff_seconds(attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped at maximum (attempt counts from 1)."""
    return float(min(maximum, base * 2 ** max(0, attempt - 1)))
