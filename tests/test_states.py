"""The job state machine: one test class per state, every illegal move raises."""

from __future__ import annotations

import pytest

from node.errors import InvalidTransition
from node.jobs.states import (
    NEXT_STAGE,
    TERMINAL,
    TRANSITION_TABLE,
    WORKING,
    JobState,
    check_transition,
)

S = JobState


def assert_moves(state: JobState, allowed: set[JobState]) -> None:
    for target in JobState:
        if target in allowed:
            check_transition(state, target)
        else:
            with pytest.raises(InvalidTransition, match=f"from {state} to {target}"):
                check_transition(state, target)


class TestReceived:
    def test_moves(self) -> None:
        assert_moves(S.RECEIVED, {S.QUEUED, S.FAILED})


class TestQueued:
    def test_moves(self) -> None:
        assert_moves(S.QUEUED, {S.FETCHING, S.FAILED})


class TestWorkingStates:
    @pytest.mark.parametrize("state", sorted(WORKING))
    def test_go_on_retry_or_fail(self, state: JobState) -> None:
        assert_moves(state, {NEXT_STAGE[state], S.RETRY, S.FAILED})

    def test_stages_run_in_order(self) -> None:
        order = [S.FETCHING]
        while order[-1] in NEXT_STAGE:
            order.append(NEXT_STAGE[order[-1]])
        assert order == [S.FETCHING, S.INFERRING, S.WRITING, S.PUBLISHING, S.DONE]


class TestRetry:
    def test_moves(self) -> None:
        assert_moves(S.RETRY, {S.FETCHING, S.FAILED})


class TestDone:
    def test_is_final(self) -> None:
        assert_moves(S.DONE, set())


class TestFailed:
    def test_only_an_admin_requeue(self) -> None:
        assert_moves(S.FAILED, {S.QUEUED})


def test_every_state_has_a_row() -> None:
    assert set(TRANSITION_TABLE) == set(JobState)
    assert TERMINAL == {S.DONE, S.FAILED}
