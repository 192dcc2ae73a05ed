"""Crashes, end to end with real processes: a node killed mid-job takes its jobs up again
at once when it restarts on its own data dir (not after the lease), and the embedded Orthanc
dies with its node, so a restarted node never talks to an orphan."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    start_orthanc,
    wait_for,
)

pytestmark = [pytest.mark.slow, needs_orthanc]


def exam(seed: int, **kwargs: object) -> list[pydicom.Dataset]:
    return [ds for ds, _truth in synthetic_exam(seed, **kwargs)]  # type: ignore[arg-type]


def test_a_restarted_node_takes_up_its_dead_predecessors_job_at_once(tmp_path: Path) -> None:
    lease = 300.0  # far longer than the test may wait: only the release can finish the job
    settings = make_settings(tmp_path, lease_seconds=lease)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        datasets = exam(seed=113, rows=3328, columns=2560)  # full size: busy long enough
        study_uid = str(datasets[0].StudyInstanceUID)
        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)

        def working() -> bool:
            jobs = node.jobs(study_uid)
            return bool(jobs) and jobs[0]["state"] in ("fetching", "inferring", "writing")

        wait_for("the job to be in progress", working, timeout=60, every=0.05)
        node.kill()
        restarted = time.monotonic()
        node.start()
        job = node.wait_final(study_uid, timeout=120)
        assert time.monotonic() - restarted < lease / 2
        assert job["state"] == "done", job["last_error"]
        history = node.get(f"/api/v1/jobs/{job['id']}")["history"]
        assert any("node restarted on the same data dir" in (h["reason"] or "") for h in history)
        outputs = OrthancClient(settings).outputs(study_uid)
        written = [o["Modality"] for o in job["result"]["outputs"]]
        assert len(outputs["SR"]) == written.count("SR") >= 1
    finally:
        node.stop()
        orthanc.stop()
