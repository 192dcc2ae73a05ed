"""Disk full while receiving, with real processes on a size-limited data dir (a tmpfs).

Orthanc's storage and index and the node's job store share a 48 MiB file system. Filled up
to under its reserve, a C-STORE is answered with a failure status and not a byte of it is
written (Orthanc 1.10 out of space mid-write would leave a partial file); the node keeps
running and says why in /healthz, /metrics and its log; freed, the images are taken and
the exam is analysed as usual. Needs root (to mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import NodeProcess, make_settings, needs_orthanc, start_orthanc, wait_for

pytestmark = [
    pytest.mark.slow,
    needs_orthanc,
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None,
        reason="mounting a size-limited tmpfs needs root and mount(8)",
    ),
]

OUT_OF_RESOURCES = 0xA700  # C-STORE "Refused: Out of Resources" (PS3.4 Table B.2-1)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def files_under(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_a_full_disk_refuses_c_store_whole_and_recovers_when_space_returns(
    small_disk: Path,
) -> None:
    data_dir = small_disk / "data"
    settings = make_settings(data_dir)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
        datasets = [ds for ds, _ in synthetic_exam(171, rows=1024, columns=832)]
        study_uid = str(datasets[0].StudyInstanceUID)

        filler = small_disk / "filler"
        with open(filler, "wb") as handle:  # leaves about 256 KiB: less than one image
            handle.write(b"\0" * (shutil.disk_usage(small_disk).free - 256 * 1024))
        storage = data_dir / "orthanc"
        before = {k: v for k, v in files_under(storage).items() if not k.startswith("index")}

        outcome = send(peer, datasets)
        assert outcome.sent == 0
        assert {status for _uid, status in outcome.failed} == {OUT_OF_RESOURCES}
        after = {k: v for k, v in files_under(storage).items() if not k.startswith("index")}
        assert after == before  # no partial file, not even an empty one
        assert node.process is not None and node.process.poll() is None
        assert orthanc.process is not None and orthanc.process.poll() is None

        health = httpx.get(node.api + "/healthz", timeout=10).json()
        assert "new images are refused" in health["disk"], health
        metrics = node.get_text("/metrics")
        gauges = dict(
            line.split() for line in metrics.splitlines() if line.startswith("mammo_node_data_")
        )
        assert float(gauges["mammo_node_data_free_bytes"]) < float(
            gauges["mammo_node_data_reserve_bytes"]
        )

        def logged(words: str) -> bool:
            return words in node.log_path.read_text()

        wait_for("the node to log the full disk", lambda: logged("disk nearly full"), 30)
        assert "C-STORE refused" in (data_dir / "orthanc.log").read_text()

        filler.unlink()  # space returns; the modality sends again
        outcome = send(peer, datasets)
        assert outcome.sent == len(datasets) and not outcome.failed
        job = node.wait_final(study_uid, timeout=180)
        assert job["state"] == "done", job["last_error"]
        assert "new images are refused" not in httpx.get(node.api + "/healthz").json()["disk"]
        wait_for("the node to log the space back", lambda: logged("disk space is back"), 30)
    finally:
        node.stop()
        orthanc.stop()
