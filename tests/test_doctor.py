"""``mammo-node doctor`` and the runtime file against a real node: every command reaches
the node given only its data folder; a closed port is a FAIL line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import yaml

from node.config import load_settings
from node.runtime.runfile import write_runtime_file
from node.synthetic.dicom import write_exam
from tests.harness import NodeProcess, free_port, make_settings, needs_orthanc, start_orthanc


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAMMO_NODE_")}
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean | env,
    )


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The doctor's lines by check name: {name: status}."""
    found = {}
    for line in result.stdout.splitlines():
        status, name = line.split()[:2]
        found[name if name != "dest" else " ".join(line.split()[1:3])] = status
    return found


def test_doctor_fails_on_a_node_whose_ports_are_closed(tmp_path: Path) -> None:
    # A runtime file naming this (living) process, but nothing listens on its ports.
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": tmp_path,
            "api_port": free_port(),
            "http_port": free_port(),
            "dicom_port": free_port(),
            "http_password": "x",
        },
    )
    write_runtime_file(settings)
    result = run_cli("doctor", env={"MAMMO_NODE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    checks = lines(result)
    assert checks["ports"] == "FAIL" and checks["orthanc"] == "FAIL"
    assert "nothing listens on" in result.stdout


@pytest.mark.slow
@needs_orthanc
def test_every_command_reaches_the_node_through_its_data_folder(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        assert (tmp_path / "node.json").exists()
        only_the_folder = {"MAMMO_NODE_DATA_DIR": str(tmp_path)}  # no ports, no password

        echo = run_cli("echo", "orthanc", env=only_the_folder)
        assert echo.returncode == 0, echo.stderr
        assert "succeeded" in echo.stdout

        jobs = run_cli("jobs", env=only_the_folder)
        assert jobs.returncode == 0 and "no node runs" not in jobs.stderr, jobs.stderr
        dead = run_cli("deliveries", "--dead", env=only_the_folder)
        assert dead.returncode == 0, dead.stderr

        exam = write_exam(tmp_path / "exam", seed=21)
        sent = run_cli("send", *map(str, exam), env=only_the_folder)  # the node's port and AE
        assert sent.returncode == 0, sent.stderr
        study = str(pydicom.dcmread(exam[0], stop_before_pixels=True).StudyInstanceUID)
        routing = run_cli("routing", "test", "--study", study, "--json", env=only_the_folder)
        assert routing.returncode == 0, routing.stderr
        rules = [json.loads(line)["rule"] for line in routing.stdout.splitlines()]
        assert rules.count("routed") == len(exam), routing.stdout

        doctor = run_cli("doctor", env=only_the_folder)
        checks = lines(doctor)
        for name in ("configuration", "node", "ports", "orthanc", "plugins", "dicomweb"):
            assert checks[name] == "OK", doctor.stdout
        for name in ("clock", "api", "database", "disk", "dest orthanc"):
            assert checks[name] == "OK", doctor.stdout
        assert checks["model"] == "OK"  # the shipped live model (mias-contralateral) loads
        assert doctor.returncode == 0, doctor.stdout

        # A destination on a closed port: its line fails, and so does the doctor.
        config = tmp_path / "node.yaml"
        closed = {
            "name": "pacs2",
            "kind": "dimse",
            "host": "127.0.0.1",
            "port": free_port(),
            "called_aet": "PACS2",
        }
        config.write_text(yaml.safe_dump({"destinations": [closed]}))
        failing = run_cli("doctor", "--config", str(config), env=only_the_folder)
        assert failing.returncode == 1, failing.stdout
        assert lines(failing)["dest pacs2"] == "FAIL"
        assert "connection refused" in failing.stdout
    finally:
        node.stop()
        orthanc.stop()
    assert not (tmp_path / "node.json").exists()  # removed when the node stops
