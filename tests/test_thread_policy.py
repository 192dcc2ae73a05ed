"""The torch thread policy of a node process: the usable CPUs shared among its workers."""

from __future__ import annotations

import pytest
import torch

from node.inference.threads import apply_thread_policy, threads_for, usable_cpus


@pytest.mark.parametrize(
    ("workers", "cpus", "expected"),
    [(1, 2, 2), (2, 2, 1), (3, 2, 1), (0, 2, 2), (2, 8, 4), (1, 1, 1)],
)
def test_the_cpus_are_shared_among_the_workers(workers: int, cpus: int, expected: int) -> None:
    assert threads_for(workers, cpus=cpus) == expected


def test_a_requested_count_wins() -> None:
    assert threads_for(2, requested=3, cpus=2) == 3


def test_the_policy_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        assert apply_thread_policy(workers=usable_cpus()) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
