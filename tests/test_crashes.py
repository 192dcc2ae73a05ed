"""Crashes, end to end with real processes: a node killed mid-job takes its jobs up again
at once when it restarts on its own data dir (not after the lease), and the embedded Orthanc
dies with its node, so a restarted node never talks to an orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest

from node.config import Settings
from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    node_environment,
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


def start_up(settings: Settings) -> subprocess.Popen[bytes]:
    """``mammo-node up`` as its own process group leader, as a shell starts it."""
    log = open(settings.data_dir / "node.log", "ab")  # handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "up"],
        env={**node_environment(settings), "MAMMO_NODE_VIEWER_PORT": "0"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    api = f"http://127.0.0.1:{settings.api_port}/healthz"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError((settings.data_dir / "node.log").read_text()[-3000:])
        try:
            return httpx.get(api, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("mammo-node up to be healthy", healthy, timeout=120)
    return process


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_up(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def own_orthanc_answers(settings: Settings) -> bool:
    """The Orthanc on the port is the one the running node configured last."""
    config = json.loads((settings.data_dir / "orthanc.json").read_text())
    system = httpx.get(
        f"{settings.orthanc_base_url}/system",
        auth=(settings.http_user, settings.http_password),
        timeout=5,
    ).json()
    return bool(system["Name"] == config["Name"] != "mammo-node")


def test_the_embedded_orthanc_dies_with_a_killed_node_and_up_starts_again(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    node = start_up(settings)
    try:
        orthanc_pid = int((tmp_path / "orthanc.pid").read_text())
        assert alive(orthanc_pid)
        os.kill(node.pid, signal.SIGKILL)  # the process group leader
        node.wait(10)
        wait_for("the orthanc to die with its node", lambda: not alive(orthanc_pid), timeout=10)
        node = start_up(settings)
        assert own_orthanc_answers(settings)
    finally:
        stop_up(node)


def test_the_embedded_orthanc_shares_the_nodes_session_in_a_group_of_its_own(
    tmp_path: Path,
) -> None:
    """Its own process group: Ctrl-C at the terminal reaches the node only, which stops it.
    The node's session: Linux schedules each session as one group (autogroup), so in a
    session of its own Orthanc would share the CPU with the node as an equal, whatever the
    workers' lower priority, and a modality's C-STORE would wait for scoring."""
    settings = make_settings(tmp_path)
    node = start_up(settings)
    try:
        orthanc_pid = int((tmp_path / "orthanc.pid").read_text())
        assert os.getsid(orthanc_pid) == os.getsid(node.pid)
        assert os.getpgid(orthanc_pid) == orthanc_pid != os.getpgid(node.pid)
    finally:
        stop_up(node)


def test_a_stale_orthanc_of_the_data_dir_is_stopped_at_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    stale = start_orthanc(settings)  # as if a node had died and left it running
    assert stale.process is not None
    stale_pid = stale.process.pid
    node = None
    try:
        node = start_up(settings)
        assert not alive(stale_pid)
        assert own_orthanc_answers(settings)
    finally:
        if node is not None:
            stop_up(node)
        stale.stop()


def test_healthz_is_quick_while_orthanc_is_frozen_and_a_dead_orthanc_is_restarted(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    node = start_up(settings)
    api = f"http://127.0.0.1:{settings.api_port}"
    try:
        orthanc_pid = int((tmp_path / "orthanc.pid").read_text())
        os.kill(orthanc_pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            answer = httpx.get(api + "/healthz", timeout=10)
            took = time.monotonic() - started
        finally:
            os.kill(orthanc_pid, signal.SIGCONT)
        assert answer.status_code == 503 and took < 1.0, (answer.status_code, took)

        os.kill(orthanc_pid, signal.SIGKILL)

        def restarted() -> bool:
            metrics = httpx.get(api + "/metrics", timeout=5).text
            healthy = httpx.get(api + "/healthz", timeout=5).status_code == 200
            return healthy and "mammo_node_orthanc_restarts_total 1.0" in metrics

        wait_for("the node to restart its Orthanc", restarted, timeout=60)
        assert node.poll() is None
        assert int((tmp_path / "orthanc.pid").read_text()) != orthanc_pid
        assert own_orthanc_answers(settings)
        log_lines = (tmp_path / "node.log").read_text().splitlines()
        assert any("orthanc exited; restarting it" in line for line in log_lines)
    finally:
        stop_up(node)
