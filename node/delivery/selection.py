"""Which output kinds each destination receives (``outputs:`` in destinations.yaml)."""

from __future__ import annotations

from collections.abc import Sequence

from node.config import ALL_OUTPUTS, Destination
from node.errors import ConfigError
from node.writers.outputs import DEFAULT_OUTPUT_KINDS, OUTPUT_KINDS


def selected_kinds(destination: Destination) -> tuple[str, ...]:
    """The output kinds a destination receives; ConfigError names unknown ones."""
    if not destination.outputs:
        return DEFAULT_OUTPUT_KINDS
    if ALL_OUTPUTS in destination.outputs:
        return tuple(OUTPUT_KINDS)
    unknown = sorted(set(destination.outputs) - set(OUTPUT_KINDS))
    if unknown:
        raise ConfigError(
            f"destination {destination.name}: unknown output kinds {', '.join(unknown)} "
            f"(known: {', '.join(OUTPUT_KINDS)}, or '{ALL_OUTPUTS}')"
        )
    return tuple(kind for kind in OUTPUT_KINDS if kind in destination.outputs)


def union_of_kinds(destinations: Sequence[Destination]) -> tuple[str, ...]:
    """What the pipeline builds, once: every kind some destination wants, in build order."""
    wanted = {kind for destination in destinations for kind in selected_kinds(destination)}
    return tuple(kind for kind in OUTPUT_KINDS if kind in wanted)
