"""The command line as a user runs it: `up` starts and stops everything, `predict` prints JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from node.synthetic.dicom import write_exam
from tests.harness import SYNTHETIC_MODEL, free_port, needs_orthanc, wait_for


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_explains_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("up", "serve", "predict", "send", "synth", "jobs", "variants"):
        assert command in result.stdout
    assert "NOT FOR CLINICAL USE" in " ".join(result.stdout.split())


def test_predict_prints_one_json_line_per_file(tmp_path: Path) -> None:
    dicom = write_exam(tmp_path / "exam", seed=5)[0]
    png = tmp_path / "image.png"
    Image.fromarray((np.linspace(0, 255, 256 * 200).reshape(256, 200)).astype(np.uint8)).save(png)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not an image")

    result = run_cli("predict", str(dicom), str(png), str(broken))
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(dicom), str(png), str(broken)]
    for row in rows[:2]:
        assert 0.0 <= row["score"] <= 1.0
        for finding in row["findings"]:
            assert set(finding) == {"x", "y", "radius", "score"}
    assert "error" in rows[2]
    assert result.returncode == 1  # one file could not be read


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("predict", "--model", "no-such-model", str(tmp_path / "x.png"))
    assert result.returncode == 1
    assert "no-such-model" in result.stderr


@pytest.mark.slow
@needs_orthanc
def test_up_serves_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    ports = {
        "--dicom-port": free_port(),
        "--http-port": free_port(),
        "--api-port": free_port(),
        "--viewer-port": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMMO_NODE_")}
    env["MAMMO_NODE_MODEL"] = SYNTHETIC_MODEL  # the test fixture, not the registry's live model
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.cli",
            "up",
            "--data-dir",
            str(tmp_path),
            *[str(x) for pair in ports.items() for x in pair],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    api = f"http://127.0.0.1:{ports['--api-port']}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, "mammo-node up exited"
            try:
                return httpx.get(api + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("mammo-node up to be healthy", healthy, timeout=90)
        metrics = httpx.get(api + "/metrics").text
        assert 'mammo_node_model_info{model_id="synthetic-unet"' in metrics
        assert 'mammo_node_jobs{state="done"}' in metrics
        orthanc = f"http://127.0.0.1:{ports['--http-port']}"
        assert httpx.get(orthanc + "/system").status_code == 401  # auth is on

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.wait(15)
        assert time.monotonic() - started < 15
        stderr = process.stderr.read().decode() if process.stderr else ""
        assert "generated password" in stderr
        leftover = subprocess.run(
            ["pgrep", "-f", str(tmp_path / "orthanc.json")], capture_output=True
        )
        assert leftover.stdout == b"", "Orthanc still running"
        with pytest.raises(httpx.HTTPError):
            httpx.get(orthanc + "/system", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
