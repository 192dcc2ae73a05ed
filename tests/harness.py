"""Real parts for end-to-end tests: an Orthanc with the plugin, and the node as a process.

Everything listens on 127.0.0.1 on free ports; every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from node.config import Settings, load_settings
from node.runtime.embedded import EmbeddedOrthanc

T = TypeVar("T")

needs_orthanc = pytest.mark.skipif(
    shutil.which("Orthanc") is None, reason="Orthanc is not installed (make setup installs it)"
)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports. The sockets stay bound until all are chosen:
    one closed before the next bind lets the kernel hand the same port out twice (seen as an
    embedded Orthanc whose HTTP and DICOM ports were both 57823)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, every: float = 0.2
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


SYNTHETIC_MODEL = "synthetic-unet/0.1.0"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    dicom_port, http_port, api_port = free_ports(3)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "dicom_port": dicom_port,
        "http_port": http_port,
        "api_port": api_port,
        "stable_age": 1,
        "lease_seconds": 4.0,
        "backoff_seconds": 0.5,
        "poll_seconds": 0.2,
        "reconcile_seconds": 1.0,
        "assembly_timeout_seconds": 2.0,  # a test exam with fewer than 4 views waits this long
        "http_password": "test-password",
        "api_token": "test-token",
    }
    if "models_dir" not in overrides:
        # The fast synthetic model is a test fixture: pinned here, never taken from the
        # registry's live entry (pass model="" to serve the live model). A test with its own
        # models folder has its own registry.
        values["model"] = SYNTHETIC_MODEL
    values.update(overrides)
    return load_settings(environ={}, overrides=values)


def orthanc_destination(settings: Settings) -> dict[str, str]:
    """The embedded Orthanc as an explicit DICOMweb destination (default outputs)."""
    return {
        "name": "orthanc",
        "url": f"{settings.orthanc_base_url}/dicom-web",
        "username": settings.http_user,
        "password": settings.http_password,
    }


def node_environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMMO_NODE_")}
    env.update(
        {
            "MAMMO_NODE_DATA_DIR": str(settings.data_dir),
            "MAMMO_NODE_API_PORT": str(settings.api_port),
            "MAMMO_NODE_HTTP_PORT": str(settings.http_port),
            "MAMMO_NODE_DICOM_PORT": str(settings.dicom_port),
            "MAMMO_NODE_HTTP_PASSWORD": settings.http_password,
            "MAMMO_NODE_API_TOKEN": settings.api_token,
            "MAMMO_NODE_LEASE_SECONDS": str(settings.lease_seconds),
            "MAMMO_NODE_BACKOFF_SECONDS": str(settings.backoff_seconds),
            "MAMMO_NODE_POLL_SECONDS": str(settings.poll_seconds),
            "MAMMO_NODE_RECONCILE_SECONDS": str(settings.reconcile_seconds),
            "MAMMO_NODE_STABLE_AGE": str(settings.stable_age),
            "MAMMO_NODE_ASSEMBLY_TIMEOUT_SECONDS": str(settings.assembly_timeout_seconds),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.model:
        env["MAMMO_NODE_MODEL"] = settings.model
    return env


@dataclass
class NodeProcess:
    """``mammo-node serve`` as a child process, so a test can kill it for real."""

    settings: Settings
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. MAMMO_NODE_DESTINATIONS

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def log_path(self) -> Path:
        return self.settings.data_dir / "node.log"

    def start(self, timeout: float = 90.0) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve"],
            env={**node_environment(self.settings), **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"node exited: {self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(self.api + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the node to be healthy", healthy, timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            self.api + path,
            params=params,
            timeout=10,
            headers={"Authorization": f"Bearer {self.settings.api_token}"},
        )
        response.raise_for_status()
        return response.json()

    def get_text(self, path: str) -> str:
        response = httpx.get(self.api + path, timeout=10)
        response.raise_for_status()
        return response.text

    def jobs(self, study_instance_uid: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/jobs", StudyInstanceUID=study_instance_uid)
        return result

    def wait_final(self, study_instance_uid: str, timeout: float = 120.0) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            for job in self.jobs(study_instance_uid):
                if job["state"] in ("done", "failed"):
                    return job
            return None

        return wait_for("the exam's job to finish", final, timeout, every=0.3)


class OrthancClient:
    """Orthanc's REST API as a test reads it."""

    def __init__(self, settings: Settings) -> None:
        self.http = httpx.Client(
            base_url=settings.orthanc_base_url,
            auth=(settings.http_user, settings.http_password),
            timeout=30,
        )

    def study_instances(self, study_instance_uid: str) -> list[dict[str, Any]]:
        found = self.http.post(
            "/tools/find",
            json={
                "Level": "Instance",
                "Query": {"StudyInstanceUID": study_instance_uid},
                "Expand": True,
            },
        )
        found.raise_for_status()
        result: list[dict[str, Any]] = found.json()
        return result

    def instance_file(self, orthanc_id: str) -> bytes:
        response = self.http.get(f"/instances/{orthanc_id}/file")
        response.raise_for_status()
        return response.content

    def outputs(self, study_instance_uid: str) -> dict[str, list[dict[str, Any]]]:
        """The node's result instances in the study, by Modality."""
        by_modality: dict[str, list[dict[str, Any]]] = {}
        for instance in self.study_instances(study_instance_uid):
            series = self.http.get(f"/instances/{instance['ID']}/series").json()
            if series["MainDicomTags"].get("Manufacturer") == "mammo-node":
                by_modality.setdefault(series["MainDicomTags"]["Modality"], []).append(instance)
        return by_modality

    def has_stable_study(self) -> bool:
        changes = self.http.get("/changes", params={"limit": 1000}).json()["Changes"]
        return any(c["ChangeType"] == "StableStudy" for c in changes)


def start_orthanc(settings: Settings) -> EmbeddedOrthanc:
    orthanc = EmbeddedOrthanc(settings)
    orthanc.start()
    return orthanc
