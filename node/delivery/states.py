"""A delivery's lifecycle as a transition table, like the job's; an illegal move raises.

pending -> delivered | retry | dead_letter
retry   -> delivered | retry | dead_letter
dead_letter -> retry (an administrator re-sends)
"""

from __future__ import annotations

from enum import StrEnum

from node import transitions


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


D = DeliveryState
TRANSITION_TABLE: dict[DeliveryState, frozenset[DeliveryState]] = {
    D.PENDING: frozenset({D.DELIVERED, D.RETRY, D.DEAD_LETTER}),
    D.RETRY: frozenset({D.DELIVERED, D.RETRY, D.DEAD_LETTER}),
    D.DELIVERED: frozenset(),
    D.DEAD_LETTER: frozenset({D.RETRY}),
}
#: States a delivery is attempted from.
SENDABLE: frozenset[DeliveryState] = frozenset({D.PENDING, D.RETRY})


def check_transition(current: DeliveryState, target: DeliveryState) -> None:
    """Raise InvalidTransition unless the table allows ``current -> target``."""
    transitions.check_transition(TRANSITION_TABLE, current, target, what="delivery")
