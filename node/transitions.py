"""Lifecycles as transition tables (pynetdicom's ``fsm.py`` is the model): one check for all.

A job (``node.jobs.states``) and a delivery (``node.delivery.states``) each declare a table
``state -> states it may move to``; an illegal move raises ``InvalidTransition`` here, with the
same wording for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from enum import StrEnum
from typing import TypeVar

from node.errors import InvalidTransition

State = TypeVar("State", bound=StrEnum)


def check_transition(
    table: Mapping[State, Set[State]], current: State, target: State, *, what: str
) -> None:
    """Raise InvalidTransition unless ``table`` allows ``current -> target`` for a ``what``."""
    if target not in table[current]:
        raise InvalidTransition(f"a {what} cannot move from {current} to {target}")
