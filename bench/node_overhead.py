"""What the node's own work costs next to the model's, side by side in one run.

Each *setup* is one ``mammo-node up`` (Orthanc with the plugin, the node's API and workers)
on free loopback ports, run from a source tree (``--tree``: this checkout, and for a
before/after comparison an export of an earlier commit) with a model and a worker count.
All setups run at once and exams go to them in turn, so a load that comes and goes on a
shared machine falls on each alike. Printed, per setup:

- latency: exams one at a time, small (1024 x 832) and full-size (3328 x 2560); seconds
  per stage from each job's transitions, the node's work (queued + fetching + writing +
  publishing) and the overhead ratio (end to end - stable wait - inferring) / inferring;
- sustained: ``--sustained`` small exams sent back to back; exams per hour from the first
  C-STORE to the last job done, and the CPU seconds per exam of the node and of its Orthanc
  (the cost, steadier than the rate on a shared machine);
- peak RSS of the node process and of its Orthanc (VmHWM) at the end;
- ingest: C-STORE seconds into each tree's last setup's Orthanc (plugin and node running, its
  workers scoring what arrives) against Orthanc alone (the same generated config without the plugin),
  in turn; and the same for an intake-only node of each tree (workers 0: the plugin, the
  forwarding and the node's intake, no inference), which separates their cost from the
  model's;
- fetch: one full-size instance by WADO-RS, gzip against identity encoding, in turn.

Timings on a shared machine are inflated; compare columns, and read the load average
printed with them.

    .venv/bin/python bench/node_overhead.py --tree before=/tmp/base --tree after=.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
from tqdm import tqdm

from node.config import load_settings
from node.net.dimse import Peer, send
from node.runtime.embedded import orthanc_config
from node.synthetic.dicom import synthetic_exam

STAGES = ("queued", "fetching", "inferring", "writing", "publishing")
NODE_WORK = ("queued", "fetching", "writing", "publishing")
SETTLE_SECONDS = 1.0  # after each ingest batch, before the next one is timed
SIZES = {"small": (1024, 832), "full": (3328, 2560)}
PASSWORD = "bench-password"
TOKEN = "bench-token"
JOB_TIMEOUT = 900.0  # seconds one exam may take before the bench gives up on it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exam(seed: int, size: str) -> list[pydicom.Dataset]:
    rows, columns = SIZES[size]
    return [ds for ds, _ in synthetic_exam(seed, rows=rows, columns=columns)]


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@dataclass
class Setup:
    """One running ``mammo-node up`` from ``tree`` with ``model`` and ``workers``."""

    label: str
    tree: Path
    model: str
    workers: int
    threads: int  # torch threads per process; 0: the tree's own default
    stable_age: int
    data_dir: Path
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def peer(self) -> Peer:
        return Peer("127.0.0.1", self.dicom_port, "MAMMONODE", "MODALITY1")

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAMMO_NODE_")}
        env.update(
            PYTHONPATH=str(self.tree),
            MAMMO_NODE_DATA_DIR=str(self.data_dir),
            MAMMO_NODE_DICOM_PORT=str(self.dicom_port),
            MAMMO_NODE_HTTP_PORT=str(self.http_port),
            MAMMO_NODE_API_PORT=str(self.api_port),
            MAMMO_NODE_VIEWER_PORT="0",
            MAMMO_NODE_HTTP_PASSWORD=PASSWORD,
            MAMMO_NODE_API_TOKEN=TOKEN,
            MAMMO_NODE_MODEL=self.model,
            MAMMO_NODE_WORKERS=str(self.workers),
            MAMMO_NODE_STABLE_AGE=str(self.stable_age),
        )
        if self.threads:
            env["MAMMO_NODE_TORCH_THREADS"] = str(self.threads)  # read by trees that know it
            env["OMP_NUM_THREADS"] = str(self.threads)  # torch's default for the others
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "up.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "up"],
                cwd=self.tree,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.data_dir / "up.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.label} exited: {tail}")
            try:
                if httpx.get(self.api + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.label} not healthy after {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def rss(self) -> tuple[float, float]:
        """Peak RSS in MB of the node process and of its Orthanc child."""
        assert self.process is not None
        node = peak_rss_mb(self.process.pid)
        orthanc = [peak_rss_mb(pid) for pid in children(self.process.pid)]
        return node, max(orthanc, default=float("nan"))

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by the node process and by its Orthanc child."""
        assert self.process is not None
        orthanc = sum(cpu_seconds(pid) for pid in children(self.process.pid))
        return cpu_seconds(self.process.pid), orthanc

    def job(self, study_uid: str) -> dict[str, Any] | None:
        """The study's finished job with its history, or None while none is."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        jobs = httpx.get(
            f"{self.api}/api/v1/jobs",
            params={"StudyInstanceUID": study_uid},
            headers=headers,
            timeout=30,
        ).json()
        for job in jobs:
            if job["state"] in ("done", "failed"):
                detail: dict[str, Any] = httpx.get(
                    f"{self.api}/api/v1/jobs/{job['id']}", headers=headers, timeout=30
                ).json()
                return detail
        return None

    def wait_job(self, study_uid: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.job(study_uid)
            if found is not None:
                if found["state"] != "done":
                    raise RuntimeError(f"{self.label}: job failed: {found.get('last_error')}")
                return found
            time.sleep(0.05)
        raise TimeoutError(f"{self.label}: no result for {study_uid} in {timeout:.0f} s")


def stage_seconds(history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state, from consecutive transitions."""
    spent: dict[str, float] = {}
    for current, following in itertools.pairwise(history):
        state = current["to_state"]
        spent[state] = spent.get(state, 0.0) + following["at"] - current["at"]
    return spent


def one_exam(setup: Setup, datasets: list[pydicom.Dataset]) -> dict[str, float]:
    sent_at = time.time()
    outcome = send(setup.peer, datasets)
    if outcome.sent != len(datasets):
        raise RuntimeError(f"{setup.label}: C-STORE sent {outcome.sent} of {len(datasets)}")
    stored_at = time.time()
    history = setup.wait_job(str(datasets[0].StudyInstanceUID))["history"]
    measured = stage_seconds(history)
    measured["c-store"] = stored_at - sent_at
    measured["stable wait + intake"] = history[0]["at"] - stored_at
    measured["end to end"] = history[-1]["at"] - sent_at
    measured["node work"] = sum(measured.get(stage, 0.0) for stage in NODE_WORK)
    inferring = measured.get("inferring", 0.0)
    idle = measured["stable wait + intake"] + inferring
    measured["overhead ratio"] = (measured["end to end"] - idle) / inferring if inferring else 0.0
    return measured


def warm_up(setups: Sequence[Setup]) -> None:
    """One small exam each, not counted: the first exam of a process loads the model's
    weights, the writers' fonts and highdicom's tables."""
    for number, setup in enumerate(tqdm(setups, desc="warm-up", unit="exam")):
        one_exam(setup, exam(5_000 + number, "small"))


def latency(setups: Sequence[Setup], exams: int, sizes: Sequence[str]) -> None:
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    work = [(size, index) for size in sizes for index in range(exams)]
    with tqdm(total=len(work) * len(setups), desc="latency", unit="exam") as bar:
        for size, index in work:
            for number, setup in enumerate(setups):
                seed = 10_000 * (number + 1) + 100 * list(SIZES).index(size) + index
                rows.setdefault((setup.label, size), []).append(one_exam(setup, exam(seed, size)))
                bar.update()
    columns = ["c-store", "stable wait + intake", *STAGES, "end to end", "node work"]
    columns.append("overhead ratio")
    for size in sizes:
        print(f"\nmedian seconds per 4-view exam, {size} {SIZES[size][0]}x{SIZES[size][1]}")
        print(f"({exams} exams each, one at a time; load average {load()})")
        labels = [setup.label for setup in setups]
        width = max(16, *(len(label) + 2 for label in labels))
        print(f"{'stage':<22}" + "".join(f"{label:>{width}}" for label in labels))
        for column in columns:
            values = [
                statistics.median(r.get(column, 0.0) for r in rows[(lb, size)]) for lb in labels
            ]
            print(f"{column:<22}" + "".join(f"{v:>{width}.3f}" for v in values))


def sustained(
    setups: Sequence[Setup], count: int, size: str = "small"
) -> dict[str, tuple[float, float, float]]:
    """Per setup, with ``count`` exams of ``size`` sent back to back: exams per hour, and the
    CPU seconds per exam of the node process and of its Orthanc (what the exams cost, steadier
    than a rate on a shared machine; 2 cores give at most 7200 CPU seconds an hour)."""
    results: dict[str, tuple[float, float, float]] = {}
    for number, setup in enumerate(tqdm(setups, desc="sustained", unit="setup")):
        batch = [exam(50_000 + 1000 * number + index, size) for index in range(count)]
        node_before, orthanc_before = setup.cpu()
        started = time.time()
        for datasets in batch:
            send(setup.peer, datasets)
        last = max(
            setup.wait_job(str(datasets[0].StudyInstanceUID))["history"][-1]["at"]
            for datasets in batch
        )
        node_after, orthanc_after = setup.cpu()
        rate = count / (last - started) * 3600
        results[setup.label] = (
            rate,
            (node_after - node_before) / count,
            (orthanc_after - orthanc_before) / count,
        )
        tqdm.write(f"sustained {setup.label}: {rate:.0f} exams/hour")
    return results


@contextmanager
def orthanc_alone(base: Path) -> Iterator[Peer]:
    """Orthanc with the generated config of this tree, without the plugin."""
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": base,
            "dicom_port": free_port(),
            "http_port": free_port(),
            "api_port": free_port(),
            "http_password": PASSWORD,
            "api_token": TOKEN,
        },
    )
    config = orthanc_config(settings)
    config.pop("PythonScript")
    config["Plugins"] = [p for p in config["Plugins"] if "python" not in Path(p).name.lower()]
    base.mkdir(parents=True, exist_ok=True)
    path = base / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with open(base / "orthanc.log", "wb") as log:
        process = subprocess.Popen(
            [shutil.which("Orthanc") or "Orthanc", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, TCP_NODELAY="1"),
        )
    try:
        url = f"http://127.0.0.1:{settings.http_port}/system"
        for _ in range(600):
            try:
                if httpx.get(url, auth=("mammo", PASSWORD), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
    finally:
        process.terminate()
        process.wait(30)


def ingest(
    targets: Sequence[Setup], alone: Peer, rounds: int, per_round: int, size: str
) -> dict[str, list[float]]:
    """Per target, ratios Orthanc-alone seconds / with-node seconds for ``per_round`` exams.

    Each round sends to every target and to Orthanc alone in turn, so a load that comes and
    goes falls on each alike; every exam is new to the Orthanc it goes to (an instance
    Orthanc already holds is stored faster, which would flatter the later targets). A
    scoring target's exams are all done before the next send, so its scoring slows only its
    own reception."""
    ratios: dict[str, list[float]] = {target.label: [] for target in targets}
    serial = itertools.count()
    for _ in tqdm(range(rounds), desc=f"ingest {size}", unit="round"):
        for target in targets:
            seconds = []
            for peer in (target.peer, alone):
                batch = [exam(90_000 + next(serial), size) for _ in range(per_round)]
                started = time.perf_counter()
                for datasets in batch:
                    send(peer, datasets)
                seconds.append(time.perf_counter() - started)
                if peer == target.peer and target.workers:
                    for datasets in batch:
                        target.wait_job(str(datasets[0].StudyInstanceUID))
                time.sleep(SETTLE_SECONDS)  # the node's notices of the last images, if any
            ratios[target.label].append(seconds[1] / seconds[0])
    return ratios


def fetch_encodings(setup: Setup, repeats: int) -> dict[str, float]:
    """Median seconds to fetch one full-size instance by WADO-RS, gzip vs identity."""
    datasets = exam(99_999, "full")
    send(setup.peer, datasets[:1])
    ds = datasets[0]
    path = (
        f"http://127.0.0.1:{setup.http_port}/dicom-web/studies/{ds.StudyInstanceUID}"
        f"/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    times: dict[str, list[float]] = {"gzip": [], "identity": []}
    with httpx.Client(auth=("mammo", PASSWORD), timeout=120) as client:
        for _ in range(repeats):
            for encoding in times:
                started = time.perf_counter()
                response = client.get(path, headers={"Accept": accept, "Accept-Encoding": encoding})
                response.raise_for_status()
                assert len(response.content) > ds.Rows * ds.Columns  # decoded whole
                times[encoding].append(time.perf_counter() - started)
    return {encoding: statistics.median(values) for encoding, values in times.items()}


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def parse_tree(value: str) -> tuple[str, Path]:
    label, _, path = value.rpartition("=")
    tree = Path(path).resolve()
    if not (tree / "node" / "__init__.py").exists():
        raise argparse.ArgumentTypeError(f"{tree} is not a source tree (no node/__init__.py)")
    return label or tree.name, tree


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tree",
        type=parse_tree,
        action="append",
        metavar="LABEL=DIR",
        help="a source tree to run the node from, e.g. before=/tmp/base (repeatable; "
        "default: this checkout)",
    )
    parser.add_argument(
        "--model",
        action="append",
        help="model id/version to serve (repeatable; default: synthetic-unet/0.1.0 and "
        "mias-contralateral/1.0.0)",
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker counts, comma-separated; latency runs with the first, sustained with "
        "each (default 1,2)",
    )
    parser.add_argument(
        "--threads",
        default="0",
        help="torch threads per node process, comma-separated, one setup each (0: each "
        "tree's own default; default 0)",
    )
    parser.add_argument("--exams", type=int, default=2, help="latency exams per size (default 2)")
    parser.add_argument(
        "--sizes",
        default="small,full",
        help="latency image sizes, comma-separated, of small,full (default both)",
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=8,
        help="small exams sent back to back per setup for exams/hour (0: skip; default 8)",
    )
    parser.add_argument(
        "--sustained-size",
        choices=list(SIZES),
        default="small",
        help="image size of the sustained exams (full: peak RSS with every worker busy on "
        "full-size images; default small)",
    )
    parser.add_argument(
        "--ingest-rounds",
        type=int,
        default=3,
        help="rounds of ingest, node vs Orthanc alone, per size (0: skip; default 3)",
    )
    parser.add_argument(
        "--ingest-exams", type=int, default=3, help="exams per ingest round (default 3)"
    )
    parser.add_argument(
        "--fetch-repeats",
        type=int,
        default=3,
        help="WADO-RS fetches of one full-size instance per encoding (0: skip; default 3)",
    )
    parser.add_argument(
        "--stable-age", type=int, default=3, help="Orthanc's StableAge in seconds (default 3)"
    )
    args = parser.parse_args(argv)
    trees = args.tree or [("this", Path.cwd())]
    models = args.model or ["synthetic-unet/0.1.0", "mias-contralateral/1.0.0"]
    workers = [int(w) for w in args.workers.split(",") if w]
    threads = [int(t) for t in args.threads.split(",") if t]
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(sizes) - set(SIZES)
    if unknown or not workers or min(workers) < 1 or not threads or min(threads) < 0:
        parser.error(f"--sizes takes {','.join(SIZES)}; --workers counts >= 1, --threads >= 0")

    with tempfile.TemporaryDirectory(prefix="node-overhead-") as scratch, ExitStack() as stack:
        setups: list[Setup] = []
        for (tree_label, tree), model, count, thread_count in itertools.product(
            trees, models, workers, threads
        ):
            short = model.split("/")[0].split("-")[-1]
            suffix = f":t{thread_count}" if len(threads) > 1 else ""
            setups.append(
                Setup(
                    label=f"{tree_label}:{short}:w{count}{suffix}",
                    tree=tree,
                    model=model,
                    workers=count,
                    threads=thread_count,
                    stable_age=args.stable_age,
                    data_dir=Path(scratch) / f"setup-{len(setups)}",
                )
            )
        intakes: list[Setup] = []  # per tree: the plugin and intake, no inference competing
        if args.ingest_rounds:
            for tree_label, tree in trees:
                intakes.append(
                    Setup(
                        label=f"{tree_label}:intake-only:w0",
                        tree=tree,
                        model=models[0],
                        workers=0,
                        threads=threads[0],
                        stable_age=args.stable_age,
                        data_dir=Path(scratch) / f"setup-intake-{len(intakes)}",
                    )
                )
        for setup in [*setups, *intakes]:
            stack.callback(setup.stop)
            setup.start()
        for setup in tqdm([*setups, *intakes], desc="starting", unit="node"):
            setup.wait_ready()
        print(f"setups: {', '.join(s.label for s in setups)}; load average {load()}")

        warm_up(setups)
        first = [s for s in setups if s.workers == workers[0]]
        if args.exams:
            latency(first, args.exams, sizes)
        if args.sustained:
            rates = sustained(setups, args.sustained, args.sustained_size)
            print(
                f"\nsustained {args.sustained_size} exams, {args.sustained} back to back "
                f"(load average {load()})"
            )
            for label, (rate, node_cpu, orthanc_cpu) in rates.items():
                print(
                    f"{label:<34}{rate:>10.0f} exams/hour   CPU s per exam: node "
                    f"{node_cpu:.2f}, orthanc {orthanc_cpu:.2f}"
                )
        print("\npeak RSS (VmHWM), MB")
        for setup in setups:
            node, orthanc = setup.rss()
            print(f"{setup.label:<34}node {node:>8.0f}   orthanc {orthanc:>8.0f}")
        if args.ingest_rounds:
            alone = stack.enter_context(orthanc_alone(Path(scratch) / "alone"))
            # The intake-only nodes in turn; then each tree's last scoring node in turn.
            scoring = list({setup.tree: setup for setup in setups}.values())
            for targets, size in itertools.product((intakes, scoring), sizes):
                measured = ingest(targets, alone, args.ingest_rounds, args.ingest_exams, size)
                for label, ratios in measured.items():
                    print(
                        f"\ningest {size}, {label} vs Orthanc alone: node/alone throughput "
                        f"median {statistics.median(ratios):.3f} (rounds: "
                        f"{', '.join(f'{r:.3f}' for r in ratios)}; load average {load()})"
                    )
        if args.fetch_repeats:
            for setup in setups[:: len(models) * len(workers) * len(threads)]:
                medians = fetch_encodings(setup, args.fetch_repeats)
                print(
                    f"\nWADO-RS fetch of one 3328x2560 instance from {setup.label}'s Orthanc: "
                    + ", ".join(f"{k} {v:.3f} s" for k, v in medians.items())
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
