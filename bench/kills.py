"""Kill figure: SIGKILL the node or its Orthanc at every stage of an exam, then count.

Starts a real Orthanc (with the plugin) and ``mammo-node serve`` on free loopback ports, with
the fast ``synthetic-unet/0.1.0`` fixture model. Each cycle sends one synthetic exam by
C-STORE and kills one process with SIGKILL when the exam reaches the cycle's stage:

- intake: the images are stored, the study is not yet stable, no job exists;
- queued: a job waits for its missing fourth view (a 3-view exam, so it stays queued);
- fetching, inferring, writing, publishing: the job's own state.

The victim alternates, six cycles at a time, between the node and Orthanc; the killed
process is started again at once on the same data dir. A job that passed its stage before
the poll saw it is killed at the stage it was in, and counted there.

At the end every exam must have exactly one result set: one finished job, done, and in
Orthanc exactly the result instances that job reports (lost: none; duplicated: more). The
recovery time of a kill runs from the SIGKILL until the exam's job is done (the restart of
the killed process included). Bounded in cycles and time; 127.0.0.1 only.

    .venv/bin/python bench/kills.py [--kills 100] [--budget 3600] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from tqdm import tqdm

from node.net.dimse import Peer, send
from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam
from tests.harness import NodeProcess, OrthancClient, make_settings, start_orthanc

STAGES = ("intake", "queued", "fetching", "inferring", "writing", "publishing")
VICTIMS = ("node", "orthanc")
ORDER = ("queued", "fetching", "inferring", "writing", "publishing", "retry")
WORKING = ("fetching", "inferring", "writing", "publishing", "retry")
POLL = 0.01  # seconds between reads of the job's state while waiting for the stage
STAGE_WAIT = 60.0  # at most this long for a cycle's stage to come
DONE_WAIT = 300.0  # at most this long for a killed exam to be done
RESTART_WAIT = 600.0  # at most this long for a killed node to answer again


@dataclass
class Kill:
    cycle: int
    victim: str
    wanted: str  # the cycle's stage
    stage: str  # the stage the exam was in when killed ("" when it was done first: no kill)
    study_instance_uid: str
    views: int
    back_seconds: float = 0.0  # SIGKILL until the killed process answers again
    recovery_seconds: float = 0.0  # SIGKILL until the exam's job is done
    final: str = ""  # the job's final state ("" when it never ended in time)


class JobStates:
    """The exam's job state, read straight from the node's SQLite (no load on its API)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def of(self, study_instance_uid: str) -> list[str]:
        if not self.path.exists():
            return []
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute(
                "SELECT state FROM jobs WHERE study_instance_uid = ? ORDER BY id",
                (study_instance_uid,),
            ).fetchall()
        return [str(row[0]) for row in rows]


def exam(seed: int, views: int) -> list[pydicom.Dataset]:
    datasets = [ds for ds, _truth in synthetic_exam(seed, rows=1024, columns=832)]
    return datasets[:views]


def wait_stage(states: JobStates, study: str, wanted: str) -> str:
    """The stage to kill in: ``wanted`` once seen, or a later working one; "" when done."""
    deadline = time.monotonic() + STAGE_WAIT
    while time.monotonic() < deadline:
        found = states.of(study)
        state = found[-1] if found else ""
        if state in ("done", "failed"):
            return ""
        if state and ORDER.index(state) >= ORDER.index(wanted):
            return state
        time.sleep(POLL)
    return ""


def wait_done(states: JobStates, study: str, timeout: float = DONE_WAIT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = states.of(study)
        if found and all(state in ("done", "failed") for state in found):
            return found[-1]
        time.sleep(0.05)
    return ""


class Cluster:
    """The node and its Orthanc as separate processes, each killable and restartable."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = make_settings(
            data_dir, assembly_timeout_seconds=3.0, lease_seconds=10.0, backoff_seconds=0.5
        )
        self.orthanc: EmbeddedOrthanc = start_orthanc(self.settings)
        self.node = NodeProcess(self.settings)
        self.node.start(timeout=RESTART_WAIT)
        self.peer = Peer("127.0.0.1", self.settings.dicom_port, self.settings.aet, "MODALITY1")
        self.states = JobStates(data_dir / "jobs.sqlite")

    def kill_and_restart(self, victim: str) -> float:
        """SIGKILL the victim, start it again; the seconds until it answers."""
        killed = time.monotonic()
        if victim == "node":
            self.node.kill()
            self.node.start(timeout=RESTART_WAIT)  # a torch import on a loaded machine
        else:
            assert self.orthanc.process is not None
            os.kill(self.orthanc.process.pid, signal.SIGKILL)
            self.orthanc.process.wait(10)
            self.orthanc.start()
        return time.monotonic() - killed

    def close(self) -> None:
        self.node.stop()
        self.orthanc.stop()


def cycle(cluster: Cluster, index: int, seed: int) -> Kill:
    wanted = STAGES[index % len(STAGES)]
    victim = VICTIMS[(index // len(STAGES)) % len(VICTIMS)]
    views = 3 if wanted == "queued" else 4
    datasets = exam(seed + index, views)
    study = str(datasets[0].StudyInstanceUID)
    send(cluster.peer, datasets)
    kill = Kill(index, victim, wanted, "", study, views)
    if wanted == "intake":
        # Stored; the study becomes stable only after stable_age (1 s): no job yet.
        kill.stage = "intake" if not cluster.states.of(study) else cluster.states.of(study)[-1]
    else:
        kill.stage = wait_stage(cluster.states, study, wanted)
    if not kill.stage:
        kill.final = wait_done(cluster.states, study)
        return kill  # done before the poll saw its stage: not killed
    killed = time.monotonic()
    kill.back_seconds = cluster.kill_and_restart(victim)
    kill.final = wait_done(cluster.states, study)
    kill.recovery_seconds = time.monotonic() - killed
    return kill


@dataclass
class Check:
    lost: list[str]
    duplicated: list[str]
    failed: list[str]
    detail: list[str]  # what was wrong with each lost or duplicated exam


def check_results(cluster: Cluster, kills: list[Kill]) -> Check:
    """One result set per exam: one finished job, done; in Orthanc exactly the SR and SEG
    instances it wrote (every output kind goes to the default destination) and of no
    modality more instances than it wrote."""
    orthanc = OrthancClient(cluster.settings)
    check = Check([], [], [], [])
    for kill in kills:
        jobs = cluster.node.jobs(kill.study_instance_uid)
        done = [job for job in jobs if job["state"] == "done"]
        outputs = orthanc.outputs(kill.study_instance_uid)
        stored = collections.Counter({m: len(found) for m, found in outputs.items()})
        written: collections.Counter[str] = collections.Counter()
        for job in done:
            written.update(o["Modality"] for o in job["result"]["outputs"])
        if any(job["state"] == "failed" for job in jobs):
            check.failed.append(kill.study_instance_uid)
        seen = f"cycle {kill.cycle}: {len(done)} done jobs, wrote {dict(written)}, in Orthanc {dict(stored)}"
        if not done or not stored.get("SR"):
            check.lost.append(kill.study_instance_uid)
            check.detail.append("lost " + seen)
        elif (
            len(done) > 1
            or any(stored[m] != written[m] for m in ("SR", "SEG"))
            or any(stored[m] > written[m] for m in stored)
        ):
            check.duplicated.append(kill.study_instance_uid)
            check.detail.append("duplicated " + seen)
    orthanc.http.close()
    return check


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):5.1f} s, max {max(values):5.1f} s"


def print_report(kills: list[Kill], check: Check, seconds: float) -> None:
    made = [k for k in kills if k.stage]
    print(f"\nkills: {len(made)} SIGKILLs in {len(kills)} exams, {seconds:.0f} s")
    print(
        f"lost {len(check.lost)}, duplicated {len(check.duplicated)}, "
        f"failed jobs {len(check.failed)}, never finished {sum(1 for k in kills if not k.final)}"
    )
    print(f"not killed (done before its stage was seen): {len(kills) - len(made)}")
    for line in check.detail[:20]:
        print("  " + line)
    print(f"\n{'victim':<8} {'stage':<11} {'kills':>5}  recovery (SIGKILL -> exam done)")
    groups: dict[tuple[str, str], list[Kill]] = collections.defaultdict(list)
    for kill in made:
        groups[(kill.victim, kill.stage)].append(kill)
    for victim in VICTIMS:
        for stage in (*STAGES, "retry"):
            group = groups.get((victim, stage), [])
            if group:
                recovery = summary([k.recovery_seconds for k in group])
                print(f"{victim:<8} {stage:<11} {len(group):>5}  {recovery}")
    for victim in VICTIMS:
        group = [k for k in made if k.victim == victim]
        print(
            f"{victim:<8} {'all':<11} {len(group):>5}  {summary([k.recovery_seconds for k in group])}"
            f"  (restart alone: {summary([k.back_seconds for k in group])})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=100, help="exams to send, one kill each")
    parser.add_argument("--budget", type=float, default=3600.0, help="stop after so many s")
    parser.add_argument("--seed", type=int, default=0, help="first exam's seed")
    parser.add_argument("--json", type=Path, help="also write every kill to this file")
    args = parser.parse_args()
    started = time.monotonic()
    kills: list[Kill] = []
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = Cluster(Path(data_dir))
        try:
            for index in tqdm(range(max(1, args.kills)), desc="kills", unit="exam"):
                if time.monotonic() - started > args.budget:
                    print(f"budget of {args.budget:.0f} s spent after {index} exams")
                    break
                kills.append(cycle(cluster, index, 1_000 * (args.seed + 1)))
            check = check_results(cluster, kills)
        finally:
            cluster.close()
    print_report(kills, check, time.monotonic() - started)
    if args.json:
        args.json.write_text(json.dumps([k.__dict__ for k in kills], indent=1))
    bad = check.lost or check.duplicated or any(not k.final for k in kills)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
