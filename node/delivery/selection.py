"""Which output kinds each destination receives (``outputs:`` in destinations.yaml).

The kinds are those of mammography (node.writers.outputs) and of the breast MRI kinetic
CAD (node.mri.outputs); a kind both build (``seg``, ``tid1500``) is one kind to a
destination, whichever modality the exam was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from node.config import ALL_OUTPUTS, Destination
from node.errors import ConfigError
from node.mri.outputs import MRI_OUTPUT_KINDS
from node.writers.outputs import DEFAULT_OUTPUT_KINDS, OUTPUT_KINDS

#: Every output kind the node can build, in build order (mammography's first).
KNOWN_OUTPUT_KINDS: Final[tuple[str, ...]] = (
    *OUTPUT_KINDS,
    *(kind for kind in MRI_OUTPUT_KINDS if kind not in OUTPUT_KINDS),
)


def selected_kinds(destination: Destination) -> tuple[str, ...]:
    """The output kinds a destination receives; ConfigError names unknown ones."""
    if not destination.outputs:
        return DEFAULT_OUTPUT_KINDS
    if ALL_OUTPUTS in destination.outputs:
        return KNOWN_OUTPUT_KINDS
    unknown = sorted(set(destination.outputs) - set(KNOWN_OUTPUT_KINDS))
    if unknown:
        raise ConfigError(
            f"destination {destination.name}: unknown output kinds {', '.join(unknown)} "
            f"(known: {', '.join(KNOWN_OUTPUT_KINDS)}, or '{ALL_OUTPUTS}')"
        )
    return tuple(kind for kind in KNOWN_OUTPUT_KINDS if kind in destination.outputs)


def union_of_kinds(destinations: Sequence[Destination]) -> tuple[str, ...]:
    """What the pipeline builds, once: every kind some destination wants, in build order."""
    wanted = {kind for destination in destinations for kind in selected_kinds(destination)}
    return tuple(kind for kind in KNOWN_OUTPUT_KINDS if kind in wanted)
