"""The thread policy of a node process: the usable CPUs shared among its workers, which\ncompute at a lower CPU priority than reception."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch

from node.errors import ConfigError
from node.inference.threads import (
    apply_thread_policy,
    lower_thread_priority,
    threads_for,
    usable_cpus,
)
from node.runtime.node import Node
from tests.harness import make_settings

T = TypeVar("T")


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


def thread_nice(native_id: int) -> int:
    """The nice value Linux keeps for one thread (field 19 of /proc/self/task/<id>/stat)."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def in_thread(call: Callable[[], T]) -> T:
    """``call()``'s answer, computed in a thread of its own (priorities are per thread)."""
    answer: list[T] = []
    thread = threading.Thread(target=lambda: answer.append(call()))
    thread.start()
    thread.join(30)
    assert answer, "the thread did not finish"
    return answer[0]


def test_a_worker_thread_and_the_threads_it_starts_run_at_the_lower_priority() -> None:
    def work() -> tuple[int, int, int, set[int]]:
        set_to = lower_thread_priority(10)
        own = thread_nice(threading.get_native_id())
        child = in_thread(lambda: thread_nice(threading.get_native_id()))
        # torch's OpenMP team, started by this thread's first parallel operator
        before = set(os.listdir("/proc/self/task"))
        with torch.inference_mode():
            torch.nn.functional.conv2d(torch.ones(1, 8, 256, 256), torch.ones(8, 8, 3, 3))
        team = {thread_nice(int(t)) for t in set(os.listdir("/proc/self/task")) - before}
        return set_to, own, child, team

    main = thread_nice(threading.get_native_id())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a team of its own for the new thread (OpenMP's is per thread)
    try:
        set_to, own, child, team = in_thread(work)
    finally:
        torch.set_num_threads(threads)
    assert (set_to, own, child) == (10, 10, 10)
    assert team <= {10}  # the team the thread started (none if torch reused one)
    assert thread_nice(threading.get_native_id()) == main  # the rest of the process is as it was


def test_the_priority_is_only_ever_lowered() -> None:
    def work() -> tuple[int, int]:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        return lower_thread_priority(10), thread_nice(threading.get_native_id())

    assert in_thread(work) == (15, 15)
    assert in_thread(lambda: (lower_thread_priority(0), thread_nice(threading.get_native_id())))[
        1
    ] == thread_nice(threading.get_native_id())


def test_the_node_runs_its_workers_at_worker_nice(tmp_path: Path) -> None:
    node = Node(make_settings(tmp_path / "data", workers=2, worker_nice=7))
    node.start()
    try:
        workers = [t for t in threading.enumerate() if t.name.startswith("worker-")]
        others = [t for t in threading.enumerate() if t.name in {"reconciler", "deliveries"}]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and {thread_nice(t.native_id or 0) for t in workers} != {
            7
        }:
            time.sleep(0.05)  # a worker sets its priority as it starts
        assert len(workers) == 2
        assert {thread_nice(t.native_id or 0) for t in workers} == {7}
        assert {thread_nice(t.native_id or 0) for t in others} == {
            thread_nice(threading.get_native_id())
        }
    finally:
        node.stop()


def test_worker_nice_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="worker_nice"):
        make_settings(tmp_path, worker_nice=20)
