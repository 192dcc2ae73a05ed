"""Scale-out on one machine: N ``mammo-node serve`` worker processes on one PostgreSQL job store.

For each N of ``--workers`` (and once more with one worker process killed), in a fresh pair of
databases: one Orthanc with index and DICOM files in PostgreSQL, the API process (no
inference, as the chart's API pod) and N worker processes (bench/scale_out_cluster.py). It
sends ``--exams`` synthetic 4-view exams by C-STORE over ``--associations`` concurrent
associations, waits for every job to end, then checks, in the job store and in Orthanc:

- lost: an exam without a done job, or without its results in Orthanc;
- duplicated: an exam with more than one job, or with result instances in Orthanc beyond
  the one result set its job recorded (one set = the job's outputs, exactly);

and prints, side by side: exams/hour (first C-STORE to last job done), the seconds each job
spent in each stage (from the job store's audit trail), CPU seconds per exam of the worker
processes, the API process, Orthanc and PostgreSQL (and the exams/hour they would allow if
the machine's cores were the node's alone: computed, not measured), how busy the whole
machine was (other users included) and the load average, and the peak RSS of each kind of
process.

The kill run SIGKILLs the worker process holding a job mid-stage; its job must be taken up by
another process once its lease (``--lease-seconds``) expires and end with one result set.

    .venv/bin/python bench/scale_out.py [--exams 40] [--workers 1,2,3] [--kill-workers 3 --kill-exams 12]
        [--model synthetic-unet/0.1.0] [--threads 1] [--lease-seconds 30]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom
from tqdm import tqdm

from bench.scale_out_cluster import (
    Cluster,
    ServeProcess,
    cpu_seconds,
    load_average,
    machine_cpu,
    peak_rss_mb,
)
from bench.scale_out_report import STAGES, KillReport, RunReport, print_table
from node.db import create_engine
from node.domain import ExamSummary
from node.jobs.states import WORKING, JobState
from node.jobs.store import Job, JobStore
from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from node.writers.provenance import NODE_MANUFACTURER
from tests.postgres import postgres_server

FINAL = (JobState.DONE, JobState.FAILED)


def make_exams(count: int, rows: int, columns: int) -> list[list[pydicom.Dataset]]:
    """``count`` distinct 4-view synthetic exams (one patient and study each)."""
    exams = []
    for seed in tqdm(range(1, count + 1), desc="synthetic exams", unit="exam", leave=False):
        exams.append([ds for ds, _ in synthetic_exam(9000 + seed, rows=rows, columns=columns)])
    return exams


def send_all(peer: Peer, exams: Sequence[list[pydicom.Dataset]], associations: int) -> float:
    """C-STORE every exam, one association per exam, ``associations`` at once; the time the
    first one started."""
    started = time.time()
    with ThreadPoolExecutor(associations, thread_name_prefix="modality") as pool:
        outcomes = list(pool.map(lambda exam: send(peer, exam, timeout=60.0), exams))
    refused = sum(len(o.failed) for o in outcomes)
    if refused:
        raise RuntimeError(f"Orthanc refused {refused} instances")
    return started


def seconds_in_states(history: Sequence[tuple[float, str]]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for (at, state), (following, _) in itertools.pairwise(history):
        spent[state] = spent.get(state, 0.0) + following - at
    return spent


class Run:
    """One measurement: the cluster up, the exams in, the jobs waited for, the checks."""

    def __init__(
        self, cluster: Cluster, exams: Sequence[list[pydicom.Dataset]], args: argparse.Namespace
    ) -> None:
        self.cluster = cluster
        self.exams = exams
        self.args = args
        self.report = RunReport(cluster.name, cluster.workers, len(exams))
        self.study_uids = [str(exam[0].StudyInstanceUID) for exam in exams]

    def measure(self, kill: bool) -> RunReport:
        c = self.cluster
        store = JobStore(create_engine(c.jobs_url))
        peer = Peer("127.0.0.1", c.settings.dicom_port, c.settings.aet, "MODALITY1")
        procs = c.serve
        cpu0 = {p.role: p.cpu() for p in procs}
        assert c.orthanc is not None
        orthanc_cpu0, pg_cpu0 = cpu_seconds(c.orthanc.pid), c.postgresql_cpu()
        busy0, total0 = machine_cpu()
        self.report.load = (load_average(), 0.0)
        victim: list[tuple[ServeProcess, Job, float]] = []
        killer = threading.Thread(
            target=lambda: victim.append(self._kill_one(store)) if kill else None, daemon=True
        )
        killer.start()
        started = send_all(peer, self.exams, self.args.associations)
        self._wait(store)
        killer.join(timeout=5)
        busy1, total1 = machine_cpu()
        self.report.load = (self.report.load[0], load_average())
        cpus = {p.role: p.cpu() - cpu0[p.role] for p in procs}
        worker_cpu = sum(v for k, v in cpus.items() if k != "api")
        n = max(1, len(self.exams))
        self.report.cpu_per_exam = {
            "workers": worker_cpu / n,
            "api": cpus["api"] / n,
            "orthanc": (cpu_seconds(c.orthanc.pid) - orthanc_cpu0) / n,
            "postgresql": (c.postgresql_cpu() - pg_cpu0) / n,
        }
        ours = sum(self.report.cpu_per_exam.values()) * n
        self.report.machine_busy = (busy1 - busy0) / (total1 - total0)
        self.report.ours_busy = ours / (total1 - total0)
        self.report.peak_rss_mb = {
            "api": procs[0].peak_rss(),
            "worker (max)": max(p.peak_rss() for p in procs[1:]),
            "orthanc": peak_rss_mb(c.orthanc.pid),
        }
        self._check(store, started)
        if victim:
            self.report.kill = self._kill_outcome(store, *victim[0])
        elif kill:
            self.report.problems.append("no worker process was seen holding a job to kill")
        store.engine.dispose()
        return self.report

    def _wait(self, store: JobStore) -> None:
        """Until every exam's job has ended (bounded by ``--timeout``), with a progress bar."""
        deadline = time.monotonic() + self.args.timeout
        with tqdm(
            total=len(self.exams), desc=f"{self.cluster.name} exams done", unit="exam"
        ) as bar:
            while time.monotonic() < deadline:
                counts = store.counts_by_state()
                ended = sum(counts[s] for s in FINAL)
                bar.update(ended - bar.n)
                bar.set_postfix(queue=counts[JobState.QUEUED] + counts[JobState.RETRY])
                if ended >= len(self.exams):
                    return
                time.sleep(1.0)
        self.report.problems.append(f"not all jobs ended within --timeout {self.args.timeout} s")

    def _kill_one(self, store: JobStore) -> tuple[ServeProcess, Job, float]:
        """SIGKILL the worker process that holds a job mid-stage (inferring preferred)."""
        by_pid = {p.pid: p for p in self.cluster.serve[1:]}
        deadline = time.monotonic() + self.args.timeout
        seen_working_at: float | None = None
        while time.monotonic() < deadline:
            held = [j for j in store.list_jobs(limit=500) if j.state in WORKING and j.lease_owner]
            held.sort(key=lambda j: j.state is not JobState.INFERRING)
            if held and seen_working_at is None:
                seen_working_at = time.monotonic()
            for job in held:
                # "<host>/<pid>:<random>" (node.jobs.worker.new_worker_id)
                pid = int(str(job.lease_owner).rsplit("/", 1)[1].split(":")[0])
                waited = time.monotonic() - (seen_working_at or 0.0)
                if pid in by_pid and (job.state is JobState.INFERRING or waited > 5.0):
                    by_pid[pid].kill()
                    return by_pid[pid], store.get(job.id), time.time()
            time.sleep(0.05)
        raise TimeoutError("no job was held by a worker process")

    def _kill_outcome(
        self, store: JobStore, victim: ServeProcess, job: Job, killed_at: float
    ) -> KillReport:
        events = store.history(job.id)
        victim_owner = f"/{victim.pid}:"
        later = [e for e in events if e.at > killed_at]
        released = next(
            (
                e.at
                for e in later
                if e.to_state == "fetching" and victim_owner not in (e.worker or "")
            ),
            None,
        )
        done = next((e for e in later if e.to_state == "done"), None)
        final = store.get(job.id)
        return KillReport(
            job_id=job.id,
            state=job.state.value,
            released_after_s=(released - killed_at) if released else -1.0,
            done_after_s=(done.at - killed_at) if done else -1.0,
            finished_by_other=done is not None and victim_owner not in (done.worker or ""),
            attempts=final.attempts,
            result_sets=self._result_sets(final),
        )

    # -- the checks: lost, duplicated, one result set --------------------------------------

    def _orthanc_outputs(self, study_uid: str) -> tuple[int, list[str]]:
        """(source instances, SOP Instance UIDs of the node's result instances) in Orthanc."""
        s = self.cluster.settings
        with httpx.Client(
            base_url=s.orthanc_base_url, auth=(s.http_user, s.http_password), timeout=30
        ) as http:
            series = http.post(
                "/tools/find",
                json={"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
            ).json()
            instances = http.post(
                "/tools/find",
                json={
                    "Level": "Instance",
                    "Query": {"StudyInstanceUID": study_uid},
                    "Expand": True,
                },
            ).json()
        own = {
            x["ID"] for x in series if x["MainDicomTags"].get("Manufacturer") == NODE_MANUFACTURER
        }
        outputs = [
            i["MainDicomTags"]["SOPInstanceUID"] for i in instances if i["ParentSeries"] in own
        ]
        return len(instances) - len(outputs), outputs

    def _result_sets(self, job: Job) -> int:
        """1: Orthanc holds exactly the outputs the job recorded; 0: none of the node's
        results; 2: anything else (results beyond the job's set, or part of it)."""
        if job.state is not JobState.DONE or job.result is None:
            return 0
        expected = {o.SOPInstanceUID for o in ExamSummary.from_json(job.result).outputs}
        _, found = self._orthanc_outputs(job.study_instance_uid)
        if not found:
            return 0
        return 1 if sorted(found) == sorted(expected) else 2

    def _check(self, store: JobStore, started: float) -> None:
        r = self.report
        jobs: dict[str, list[Job]] = {}
        for job in store.list_jobs(limit=100 * len(self.exams) + 100):
            jobs.setdefault(job.study_instance_uid, []).append(job)
        done_at: list[float] = []
        stages: dict[str, list[float]] = {}
        for study_uid in self.study_uids:
            found = jobs.pop(study_uid, [])
            if len(found) > 1:
                r.duplicated += 1
                r.problems.append(f"{len(found)} jobs for one exam")
            done = [j for j in found if j.state is JobState.DONE]
            r.failed += sum(j.state is JobState.FAILED for j in found)
            sources, _ = self._orthanc_outputs(study_uid)
            sets = max((self._result_sets(j) for j in done), default=0)
            if sources != len(self.exams[0]) or sets == 0:
                r.lost += 1
                continue
            if sets != 1:
                r.duplicated += 1
                r.problems.append(f"job {done[0].id}: Orthanc's results differ from its outputs")
                continue
            r.done += 1
            history = [(e.at, e.to_state) for e in store.history(done[0].id)]
            done_at.append(history[-1][0])
            for stage, seconds in seconds_in_states(history).items():
                stages.setdefault(stage, []).append(seconds)
        if jobs:
            r.duplicated += len(jobs)
            r.problems.append(f"{len(jobs)} jobs of studies that were never sent")
        r.wall_s = max(done_at) - started if done_at else 0.0
        r.end_to_end_s = statistics.median(t - started for t in done_at) if done_at else 0.0
        r.stage_s = {s: statistics.median(stages[s]) for s in STAGES if s in stages}


def run_scale_out(args: argparse.Namespace, out: Callable[[str], None] = print) -> list[RunReport]:
    """Every run of ``args`` (see --help) against one throw-away PostgreSQL server."""
    exams = make_exams(args.exams, args.rows, args.columns)
    plan = [(n, False, exams) for n in args.workers]
    if args.kill_workers:
        plan.append((args.kill_workers, True, exams[: args.kill_exams]))
    reports = []
    with postgres_server() as server_url, tempfile.TemporaryDirectory() as root:
        for workers, kill, sent in plan:
            name = f"n{workers}" + ("_kill" if kill else "")
            cluster = Cluster(
                server_url, Path(root), name, workers, args.model, args.threads, args.lease_seconds
            )
            out(f"{name}: starting Orthanc on PostgreSQL, the API and {workers} worker processes")
            try:
                cluster.start()
                reports.append(Run(cluster, sent, args).measure(kill))
            finally:
                cluster.stop()
    return reports


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exams", type=int, default=40, help="exams sent in each run")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2, 3],
        help="comma-separated numbers of worker processes, one run each (default 1,2,3)",
    )
    parser.add_argument(
        "--kill-workers",
        type=int,
        default=3,
        help="worker processes of the extra run in which one is SIGKILLed mid-job (0: no such run)",
    )
    parser.add_argument(
        "--kill-exams", type=int, default=12, help="exams sent in the kill run (at most --exams)"
    )
    parser.add_argument(
        "--model",
        default="",
        help="model reference, e.g. synthetic-unet/0.1.0 (the fast test model); "
        "default: the live model of models/registry.yaml",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker process (OMP_NUM_THREADS)"
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="the node's lease_seconds: how soon a killed process's job is taken up again "
        "(the node's default is 120)",
    )
    parser.add_argument(
        "--associations", type=int, default=4, help="C-STORE associations sending at once"
    )
    parser.add_argument("--rows", type=int, default=1024, help="rows of each synthetic image")
    parser.add_argument("--columns", type=int, default=832, help="columns of each synthetic image")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds each run may take at most"
    )
    args = parser.parse_args(argv)
    if args.exams < 1 or min(args.workers) < 1 or not 1 <= args.kill_exams <= args.exams:
        parser.error("--exams and --workers must be >= 1, --kill-exams 1 to --exams")
    if args.kill_workers == 1 or args.kill_workers < 0:
        parser.error("--kill-workers: 0 (no kill run) or >= 2 (someone must take the job up)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reports = run_scale_out(args)
    print_table(reports)
    bad = any(r.lost or r.duplicated or r.failed or r.problems for r in reports)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
