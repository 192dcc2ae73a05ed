"""End-to-end latency of exams through the embedded node, stage by stage.

Starts a real Orthanc (with the plugin) and the node on free loopback ports, sends
synthetic 4-view exams by C-STORE, and reads each job's history to split the time into
stages. Small (1024 x 832) and full-size (3328 x 2560) images side by side.

    .venv/bin/python bench/exam_latency.py [--exams 3]
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
from node.net.dimse import Peer, send
from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam

STAGES = ("queued", "fetching", "inferring", "writing", "publishing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_done(api: str, token: str, study_uid: str, timeout: float = 300) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(
            f"{api}/api/v1/jobs", params={"StudyInstanceUID": study_uid}, headers=headers
        ).json()
        for job in jobs:
            if job["state"] in ("done", "failed"):
                detail: dict[str, Any] = httpx.get(
                    f"{api}/api/v1/jobs/{job['id']}", headers=headers
                ).json()
                return detail
        time.sleep(0.05)
    raise TimeoutError(study_uid)


def stage_seconds(history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state, from consecutive transitions."""
    spent: dict[str, float] = {}
    for current, following in itertools.pairwise(history):
        spent[current["to_state"]] = (
            spent.get(current["to_state"], 0.0) + following["at"] - current["at"]
        )
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exams", type=int, default=3, help="exams per image size")
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
                "http_password": "bench",
                "api_token": "bench",
            },
        )
        orthanc = EmbeddedOrthanc(settings)
        orthanc.start()
        env_args = [
            f"MAMMO_NODE_{k.upper()}={v}"
            for k, v in {
                "data_dir": data_dir,
                "api_port": settings.api_port,
                "http_port": settings.http_port,
                "http_password": "bench",
                "api_token": "bench",
                "stable_age": 1,
            }.items()
        ]
        node = subprocess.Popen(
            ["env", *env_args, sys.executable, "-m", "node.cli", "serve"],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(data_dir) / "node.log", "wb"),
        )
        api = f"http://127.0.0.1:{settings.api_port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(api + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
            rows: dict[str, list[dict[str, float]]] = {}
            for label, size in (("1024x832", (1024, 832)), ("3328x2560", (3328, 2560))):
                for index in range(args.exams):
                    datasets = [
                        ds
                        for ds, _ in synthetic_exam(
                            7000 + index + size[0], rows=size[0], columns=size[1]
                        )
                    ]
                    sent_at = time.time()
                    send(peer, datasets)
                    stored_at = time.time()
                    job = wait_done(api, "bench", str(datasets[0].StudyInstanceUID))
                    history = job["history"]
                    measured = stage_seconds(history)
                    measured["c-store"] = stored_at - sent_at
                    measured["stable wait + intake"] = history[0]["at"] - stored_at
                    measured["end to end"] = history[-1]["at"] - sent_at
                    rows.setdefault(label, []).append(measured)
        finally:
            node.terminate()
            node.wait(20)
            orthanc.stop()

    columns = ["c-store", "stable wait + intake", *STAGES, "end to end"]
    print(f"median seconds per 4-view exam over {args.exams} exams (StableAge = 1 s)")
    print(f"{'stage':<22}" + "".join(f"{label:>14}" for label in rows))
    for column in columns:
        values = [statistics.median(r.get(column, 0.0) for r in runs) for runs in rows.values()]
        print(f"{column:<22}" + "".join(f"{v:>14.3f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
