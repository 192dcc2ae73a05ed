"""Seconds per breast DCE-MRI exam through the node, end to end and stage by stage.

Starts a real Orthanc (with the plugin) and the node on free loopback ports, sends
synthetic DCE studies (a T2 series, the DCE phases and a subtraction series) by C-STORE,
and reads each job's history to split the time into stages: C-STORE, the stable-study wait
and intake (routing every instance), queued, fetching (WADO-RS of every DCE image), inferring
(phase assembly and kinetics), writing (SEG, TID 1500 SR, colour map) and publishing
(STOW-RS back into Orthanc). Peak RSS of the node process is read from /proc at the end.

    .venv/bin/python bench/mri_exam_latency.py [--exams 2] [--slices 24] [--rows 96]
        [--columns 128] [--phases 6]

Measured 2026-11-29 on the shared 2-core machine under a load average of 21-24 (so every
figure is inflated), seconds, median:

    study (T2 + 6 DCE phases + subtraction)   24 x 96 x 128, 2 exams   64 x 256 x 256, 1 exam
    C-STORE                                    11.6  (192 images)        13.2  (512 images)
    stable wait (1 s) + intake                  3.9                       7.9
    queued / fetching                       0.2 / 3.5                0.2 / 31.6
    inferring (assembly + kinetics)             0.5                       4.3
    writing (SEG, SR, colour map)               3.2                       5.2
    publishing (STOW-RS)                        1.1                       2.1
    end to end                                 24.0                      64.4
    node peak RSS                             624 MiB                   921 MiB

Fetching (one WADO-RS request per DCE image) dominates at the larger size.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from node.config import load_settings
from node.mri.phantom import make_dce_phantom
from node.mri.synthetic_dicom import dce_study
from node.net.dimse import Peer, send
from node.runtime.embedded import EmbeddedOrthanc

STAGES = ("queued", "fetching", "inferring", "writing", "publishing")
TOKEN = "bench"
HTTP_TIMEOUT = 30.0  # the API answers slowly on a loaded machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_done(api: str, study_uid: str, timeout: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(
            f"{api}/api/v1/jobs",
            params={"StudyInstanceUID": study_uid},
            headers=headers,
            timeout=HTTP_TIMEOUT,
        ).json()
        for job in jobs:
            if job["state"] in ("done", "failed"):
                detail: dict[str, Any] = httpx.get(
                    f"{api}/api/v1/jobs/{job['id']}", headers=headers, timeout=HTTP_TIMEOUT
                ).json()
                return detail
        time.sleep(0.2)
    raise TimeoutError(f"no final job for study {study_uid} within {timeout:.0f} s")


def stage_seconds(history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state, from consecutive transitions."""
    spent: dict[str, float] = {}
    for current, following in itertools.pairwise(history):
        state = current["to_state"]
        spent[state] = spent.get(state, 0.0) + following["at"] - current["at"]
    return spent


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a running process (Linux), in MiB; 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exams", type=int, default=2, help="DCE exams sent, one after another")
    parser.add_argument("--slices", type=int, default=24, help="slices per phase (default 24)")
    parser.add_argument("--rows", type=int, default=96, help="rows per slice (default 96)")
    parser.add_argument("--columns", type=int, default=128, help="columns per slice (default 128)")
    parser.add_argument("--phases", type=int, default=6, help="pre + post phases (default 6)")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for each exam's job"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            environ={},
            overrides={
                "data_dir": data_dir,
                "dicom_port": free_port(),
                "http_port": free_port(),
                "api_port": free_port(),
                "stable_age": 1,
                "http_password": TOKEN,
                "api_token": TOKEN,
            },
        )
        orthanc = EmbeddedOrthanc(settings)
        orthanc.start()
        env = {
            "data_dir": data_dir,
            "api_port": settings.api_port,
            "http_port": settings.http_port,
            "dicom_port": settings.dicom_port,
            "http_password": TOKEN,
            "api_token": TOKEN,
            "stable_age": 1,
        }
        variables = [f"MAMMO_NODE_{k.upper()}={v}" for k, v in env.items()]
        log = (Path(data_dir) / "node.log").open("wb")
        node = subprocess.Popen(
            ["env", *variables, sys.executable, "-m", "node.cli", "serve"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        api = f"http://127.0.0.1:{settings.api_port}"
        rows: list[dict[str, float]] = []
        images = 0
        try:
            for _ in range(600):
                try:
                    if httpx.get(api + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
            for index in range(args.exams):
                phantom = make_dce_phantom(
                    seed=9000 + index,
                    slices=args.slices,
                    rows=args.rows,
                    columns=args.columns,
                    post_phases=args.phases - 1,
                )
                datasets, _ = dce_study(9000 + index, phantom)
                images = len(datasets)
                print(f"exam {index + 1}/{args.exams}: sending {images} images", flush=True)
                sent_at = time.time()
                send(peer, datasets, timeout=120)
                stored_at = time.time()
                job = wait_done(api, str(datasets[0].StudyInstanceUID), args.timeout)
                if job["state"] != "done":
                    print(f"exam {index + 1} failed: {job['last_error']}", file=sys.stderr)
                    return 1
                history = job["history"]
                measured = stage_seconds(history)
                measured["c-store"] = stored_at - sent_at
                measured["stable wait + intake"] = history[0]["at"] - stored_at
                measured["end to end"] = history[-1]["at"] - sent_at
                rows.append(measured)
            rss = peak_rss_mib(node.pid)
        finally:
            node.terminate()
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(10)
            log.close()
            orthanc.stop()

    size = f"{args.phases} phases x {args.slices} x {args.rows} x {args.columns}"
    print(f"median seconds per DCE exam over {args.exams} ({size}; {images} images sent)")
    for column in ("c-store", "stable wait + intake", *STAGES, "end to end"):
        value = statistics.median(r.get(column, 0.0) for r in rows)
        print(f"{column:<22}{value:>10.2f}")
    print(f"{'node peak RSS (MiB)':<22}{rss:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
