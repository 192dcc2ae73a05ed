"""How many threads torch computes with in a node process: the CPUs this process may use,
shared among its workers.

Workers are threads of one process and torch's intra-op pool is per process. Torch's own
default is one thread per core for every inference, so W workers on C cores run W x C busy
threads and oversubscribe the machine (with Orthanc and the writers beside them). Here each
worker's inference gets C // W threads (at least one): one worker on two cores uses both,
two workers one each. ``bench/node_overhead.py --workers 1,2 --threads 0,1,2`` compares.

Workers also compute at a lower CPU priority (``worker_nice``) than the rest of the machine:
on a host that runs Orthanc beside the node, a modality's C-STORE is received at full speed
while exams are scored, and scoring takes what reception leaves (the same total work).
"""

from __future__ import annotations

import logging
import os
import threading

import torch

__all__ = ["apply_thread_policy", "lower_thread_priority", "threads_for"]

log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's cpuset, taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def threads_for(workers: int, requested: int = 0, cpus: int | None = None) -> int:
    """``requested`` when set (> 0); otherwise the usable CPUs divided among ``workers``
    (at least one each; a process with no workers keeps one for the shadow and predict)."""
    if requested > 0:
        return requested
    return max(1, (cpus or usable_cpus()) // max(1, workers))


def apply_thread_policy(workers: int, requested: int = 0) -> int:
    """Set torch's intra-op threads for this process; returns how many."""
    threads = threads_for(workers, requested)
    torch.set_num_threads(threads)
    log.info("torch threads set", extra={"threads": threads, "workers": workers})
    return threads


def lower_thread_priority(nice: int) -> int:
    """Run the calling thread, and the threads it starts from now on (stage threads, torch's
    OpenMP team), at ``nice`` (Linux keeps a nice value per thread, inherited by new ones).
    Never raises the priority: a thread already nicer keeps its value. Returns the nice value
    the thread runs at (unchanged where the platform has no per-thread priority)."""
    get_native_id = getattr(threading, "get_native_id", None)
    if nice <= 0 or get_native_id is None or not hasattr(os, "setpriority"):
        return 0
    thread = get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, thread, nice)
        return max(current, nice)
    except OSError as error:  # a platform where the id is the process's: keep going as is
        log.warning("cannot lower the worker's CPU priority: %s", error)
        return 0
