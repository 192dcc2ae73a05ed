"""Fuzz figure: broken and hostile DICOM by C-STORE and STOW-RS into a real Orthanc + node.

Starts the embedded Orthanc (with the plugin) and ``mammo-node serve`` on free loopback
ports, sends ``--count`` broken inputs (node.synthetic.hostile: truncations, wrong lengths
and VRs, bombs, bogus transfer syntaxes, hostile names and UIDs), each in a study of its
own, then a good 4-view exam, and prints: crashes, hangs, the node's peak RSS, the outcome
of every input (refused at the door / ignored with a reason / job failed with a reason /
done), and the good exam's latency against the same exam's latency before the fuzz.
Bounded in count and time; 127.0.0.1 only.

    .venv/bin/python bench/fuzz.py [--count 1000] [--seed 0] [--budget 1200]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pydicom
from pydicom.multival import MultiValue

from node.errors import MammoNodeError
from node.net.dimse import Peer, send
from node.net.multipart import build_related
from node.synthetic.dicom import synthetic_exam
from node.synthetic.hostile import BrokenInput, broken_inputs
from tests.harness import NodeProcess, make_settings, start_orthanc

FINAL = ("done", "failed")


@dataclass
class Outcome:
    kind: str
    via: str  # "STOW-RS" or "C-STORE"
    study_instance_uid: str
    series_instance_uid: str = ""
    door: str = ""  # why Orthanc refused it; empty when stored
    result: str = ""  # "job done", "job failed: ...", "ignored: ...", or "" (none yet)
    attempts: int = 0  # of its job; more than 1 means it was retried as if transient


@dataclass
class FuzzReport:
    inputs: int
    outcomes: list[Outcome]
    crashes: int
    hangs: int
    unexpected_errors: int
    node_peak_rss_mb: float
    orthanc_peak_rss_mb: float
    good_latency_before: float
    good_latency_after: float
    good_state: str
    seconds: float
    retried: int = 0
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def without_outcome(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.door and not o.result]


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of a process's resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stow(http: httpx.Client, data: bytes) -> str:
    """STOW-RS one Part 10 file; the refusal ("" when stored)."""
    body, content_type = build_related([data])
    try:
        response = http.post(
            "/dicom-web/studies",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
    except httpx.HTTPError as error:
        return f"STOW-RS {type(error).__name__}"
    if response.status_code != 200:
        return f"STOW-RS HTTP {response.status_code}"
    try:
        answer = response.json()
    except ValueError:
        return ""
    failed = answer.get("00081198", {}).get("Value", []) if isinstance(answer, dict) else []
    if failed:
        reason = failed[0].get("00081197", {}).get("Value", ["?"])[0]
        return f"STOW-RS FailureReason {reason}"
    return ""


def c_store(peer: Peer, dataset: pydicom.Dataset) -> str:
    """C-STORE one dataset; the refusal ("" when stored)."""
    try:
        outcome = send(peer, [dataset], timeout=20)
    except MammoNodeError as error:
        return f"C-STORE {type(error).__name__}"
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        # pynetdicom cannot even encode it: refused on our side of the door.
        return f"C-STORE not encodable ({type(error).__name__})"
    if outcome.failed:
        return f"C-STORE status 0x{outcome.failed[0][1]:04X}"
    return ""


def outcome_of(node: NodeProcess, study_instance_uid: str) -> tuple[str, int]:
    """The node's recorded outcome for a study: its job's, else its routing decision.

    Orthanc stores a UID with its spaces removed ("1.2.3 4" as "1.2.34"), so the node
    records it so."""
    study_instance_uid = study_instance_uid.replace(" ", "")
    jobs = node.jobs(study_instance_uid)
    for job in jobs:
        if job["state"] == "done":
            return "job done", int(job["attempts"])
        if job["state"] == "failed":
            return f"job failed: {job.get('last_error') or ''}", int(job["attempts"])
    if jobs:
        return "", 0  # still running
    routing = node.get("/api/v1/routing", StudyInstanceUID=study_instance_uid[:64])
    ignored = [r for r in routing if r["decision"] == "ignored"]
    if ignored:
        return f"ignored: {ignored[0]['reason']}", 0
    return "", 0


def good_exam_latency(
    node: NodeProcess, peer: Peer, seed: int, timeout: float
) -> tuple[float, str]:
    datasets = [ds for ds, _ in synthetic_exam(seed, rows=256, columns=208)]
    started = time.monotonic()
    send(peer, datasets)
    study = str(datasets[0].StudyInstanceUID)
    while time.monotonic() - started < timeout:
        for job in node.jobs(study):
            if job["state"] in FINAL:
                return time.monotonic() - started, str(job["state"])
        time.sleep(0.1)
    return time.monotonic() - started, "hung"


def run_fuzz(
    count: int, seed: int, budget: float, data_dir: Path, keep_log: Path | None = None
) -> FuzzReport:
    """Send ``count`` broken inputs and a good exam after; stop waiting after ``budget`` s."""
    started = time.monotonic()
    settings = make_settings(data_dir, assembly_timeout_seconds=0.0)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings, extra_env={"MAMMO_NODE_STAGE_TIMEOUT_SECONDS": "60"})
    outcomes: list[Outcome] = []
    try:
        node.start()
        assert node.process is not None and orthanc.process is not None
        peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
        before, _ = good_exam_latency(node, peer, seed + 900_001, timeout=120)
        http = httpx.Client(
            base_url=settings.orthanc_base_url,
            auth=(settings.http_user, settings.http_password),
            timeout=30,
        )
        inputs: list[BrokenInput] = list(broken_inputs(count, seed=seed))
        for index, item in enumerate(inputs):
            by_dimse = item.dataset is not None and index % 2 == 1
            door = (
                c_store(peer, item.dataset) if by_dimse and item.dataset else stow(http, item.data)
            )
            value = item.dataset.get("SeriesInstanceUID", "") if item.dataset else ""
            series = "\\".join(value) if isinstance(value, MultiValue) else str(value)
            via = "C-STORE" if by_dimse else "STOW-RS"
            outcomes.append(Outcome(item.kind, via, item.study_instance_uid, series, door))
        # Wait (bounded) until every stored input has an outcome.
        pending = [o for o in outcomes if not o.door]
        while pending and time.monotonic() - started < budget:
            if node.process.poll() is not None or orthanc.process.poll() is not None:
                break  # a crash: reported below with the exit codes
            for outcome in pending:
                outcome.result, outcome.attempts = outcome_of(node, outcome.study_instance_uid)
            pending = [o for o in pending if not o.result]
            # The node records routing once per series: a hostile Series Instance UID
            # shared by several studies has its one record under the first of them.
            by_series = {
                r["series_instance_uid"]: r["reason"]
                for r in node.get("/api/v1/routing")
                if r["decision"] == "ignored"
            }
            for outcome in pending:
                series = outcome.series_instance_uid.replace(" ", "")[:64]
                if series in by_series:
                    outcome.result = f"ignored: {by_series[series]} (series recorded once)"
            pending = [o for o in pending if not o.result]
            if pending:
                time.sleep(2.0)
        exits = (node.process.poll(), orthanc.process.poll())
        if exits == (None, None):
            after, state = good_exam_latency(node, peer, seed + 900_002, timeout=120)
        else:  # a crash: say which process ended and how, instead of a failed HTTP call
            after, state = 0.0, f"not sent: node exit {exits[0]}, Orthanc exit {exits[1]}"
        log = node.log_path.read_text(errors="replace")
        if keep_log is not None:
            keep_log.write_text(log)
        alive = node.process.poll() is None and orthanc.process.poll() is None
        report = FuzzReport(
            inputs=len(inputs),
            outcomes=outcomes,
            crashes=0 if alive else 1,
            hangs=len(pending) + (state == "hung"),
            unexpected_errors=log.count("unexpected error in"),
            node_peak_rss_mb=peak_rss_mb(node.process.pid),
            orthanc_peak_rss_mb=peak_rss_mb(orthanc.process.pid),
            good_latency_before=before,
            good_latency_after=after,
            good_state=state,
            seconds=time.monotonic() - started,
        )
        http.close()
    finally:
        node.stop()
        orthanc.stop()
    report.retried = sum(1 for outcome in outcomes if outcome.attempts > 1)
    report.by_class = dict(collections.Counter(_class(o) for o in outcomes))
    return report


def _class(outcome: Outcome) -> str:
    if outcome.door:
        return "refused at the door"
    if not outcome.result:
        return "NO OUTCOME"
    return outcome.result.split(":")[0]


def _reason(outcome: Outcome) -> str:
    text = outcome.door or outcome.result or "NO OUTCOME"
    return text.split("(gave up")[0][:110]


def print_report(report: FuzzReport) -> None:
    print(f"fuzz: {report.inputs} broken inputs in {report.seconds:.0f} s")
    print(
        f"crashes {report.crashes}, hangs {report.hangs}, unexpected errors {report.unexpected_errors}"
    )
    print(f"jobs retried as if transient: {report.retried}")
    print(
        f"peak RSS: node {report.node_peak_rss_mb:.0f} MB, Orthanc {report.orthanc_peak_rss_mb:.0f} MB"
    )
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_class.items())))
    print(f"inputs without a recorded outcome: {len(report.without_outcome)}")
    print(
        f"good exam after the fuzz: {report.good_state} in {report.good_latency_after:.1f} s"
        f" (before: {report.good_latency_before:.1f} s)"
    )
    rows: dict[tuple[str, str, str], int] = collections.Counter(
        (o.kind, o.via, _reason(o)) for o in report.outcomes
    )
    print(f"\n{'count':>5}  {'kind':<22} {'via':<8} outcome")
    for (kind, via, reason), number in sorted(rows.items()):
        print(f"{number:>5}  {kind:<22} {via:<8} {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000, help="broken inputs (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds, at most")
    parser.add_argument("--log", type=Path, help="keep the node's log in this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        report = run_fuzz(max(1, args.count), args.seed, args.budget, Path(data_dir), args.log)
    print_report(report)
    ok = (
        not (report.crashes or report.hangs or report.without_outcome)
        and report.good_state == "done"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
