"""`data fetch` then `data import`: studies from a real Orthanc (QIDO-RS + WADO-RS) become a
de-identified dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node.datasets.manifest import read_manifest
from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import make_settings, needs_orthanc, node_environment, start_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_fetch_then_import_gives_a_deidentified_dataset(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "node")
    orthanc = start_orthanc(settings)
    try:
        datasets = [ds for ds, _truth in synthetic_exam(seed=401, patient_id="PAT-401")]
        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        env = node_environment(settings)
        study = str(datasets[0].StudyInstanceUID)

        fetched = run_cli(
            env,
            "data",
            "fetch",
            "--study",
            study,
            "--study",
            "1.2.3.4.404",
            "--out",
            str(tmp_path / "raw"),
        )
        assert "fetched 4 instances" in fetched.stdout, fetched.stderr
        assert "not found: study 1.2.3.4.404" in fetched.stdout
        assert fetched.returncode == 1  # one study was missing, and the command says so
        files = sorted((tmp_path / "raw").rglob("*.dcm"))
        assert len(files) == 4 and all(study not in f.name for f in files)

        imported = run_cli(
            env,
            "data",
            "import",
            str(tmp_path / "raw"),
            "--format",
            "dicom",
            "--out",
            str(tmp_path / "ds"),
        )
        assert imported.returncode == 0, imported.stderr
        records = read_manifest(tmp_path / "ds")
        assert len(records) == 4
        assert {r.patient_id for r in records} != {"PAT-401"}  # pseudonymised
        assert len({r.patient_id for r in records}) == 1  # consistently
    finally:
        orthanc.stop()
