"""The job lifecycle as a transition table; an illegal move raises InvalidTransition.

received -> queued -> fetching -> inferring -> writing -> publishing -> done
Any working state may go to ``retry`` (a transient fault, or a worker that died and let its
lease expire) or to ``failed`` (a fault that can never succeed, or the last attempt).
``retry`` goes back to ``fetching`` once its backoff has passed. An admin may re-queue a
``failed`` job.
"""

from __future__ import annotations

from enum import StrEnum

from node import transitions


class JobState(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    FETCHING = "fetching"
    INFERRING = "inferring"
    WRITING = "writing"
    PUBLISHING = "publishing"
    RETRY = "retry"
    DONE = "done"
    FAILED = "failed"


S = JobState

#: States in which a worker holds a lease on the job.
WORKING: frozenset[JobState] = frozenset({S.FETCHING, S.INFERRING, S.WRITING, S.PUBLISHING})
#: States a worker may lease a job from.
LEASABLE: frozenset[JobState] = frozenset({S.QUEUED, S.RETRY})
TERMINAL: frozenset[JobState] = frozenset({S.DONE, S.FAILED})

TRANSITION_TABLE: dict[JobState, frozenset[JobState]] = {
    S.RECEIVED: frozenset({S.QUEUED, S.FAILED}),
    S.QUEUED: frozenset({S.FETCHING, S.FAILED}),
    S.FETCHING: frozenset({S.INFERRING, S.RETRY, S.FAILED}),
    S.INFERRING: frozenset({S.WRITING, S.RETRY, S.FAILED}),
    S.WRITING: frozenset({S.PUBLISHING, S.RETRY, S.FAILED}),
    S.PUBLISHING: frozenset({S.DONE, S.RETRY, S.FAILED}),
    S.RETRY: frozenset({S.FETCHING, S.FAILED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
}

#: The working stage that follows each one on success.
NEXT_STAGE: dict[JobState, JobState] = {
    S.FETCHING: S.INFERRING,
    S.INFERRING: S.WRITING,
    S.WRITING: S.PUBLISHING,
    S.PUBLISHING: S.DONE,
}


def check_transition(current: JobState, target: JobState) -> None:
    """Raise InvalidTransition unless the table allows ``current -> target``."""
    transitions.check_transition(TRANSITION_TABLE, current, target, what="job")
