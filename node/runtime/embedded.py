"""The embedded Orthanc: a generated configuration and a supervised child process.

Never Debian's systemd service (it listens with other plugins on fixed ports): the node
writes its own config under the data directory and starts ``Orthanc`` itself, with
``TCP_NODELAY=1`` (DCMTK leaves Nagle on, which caps small C-STORE at ~11/s on loopback).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx

from node.config import PROJECT_ROOT, Settings
from node.errors import ConfigError, PeerUnavailable
from node.writers.provenance import NODE_MANUFACTURER

log = logging.getLogger(__name__)

PLUGIN_SCRIPT = PROJECT_ROOT / "orthanc" / "mammo_node_plugin.py"
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
REQUIRED_PLUGINS = ("libOrthancDicomWeb.so", "libOrthancPython.so")


def find_plugins() -> list[str]:
    """Absolute paths of the DICOMweb and Python plugins of the Debian packages."""
    found = []
    for name in REQUIRED_PLUGINS:
        for directory in PLUGIN_DIRS:
            if (directory / name).exists():
                found.append(str(directory / name))
                break
        else:
            raise ConfigError(
                f"Orthanc plugin {name} not found (apt-get install orthanc-python orthanc-dicomweb)"
            )
    return found


def orthanc_config(settings: Settings) -> dict[str, Any]:
    """The Orthanc configuration of the embedded node (JSON-serialisable)."""
    storage = (settings.data_dir / "orthanc").resolve()
    return {
        "Name": "mammo-node",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": settings.http_port,
        "DicomPort": settings.dicom_port,
        "DicomAet": settings.aet,
        # Orthanc 1.10 listens on every interface: only local HTTP, with basic auth.
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {settings.http_user: settings.http_password},
        # DICOM: only the called AE title of the node, only known modalities may store.
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {
            m.aet: {
                "AET": m.aet,
                "Host": m.host,
                "Port": m.port,
                "AllowStore": True,
                "AllowEcho": True,
            }
            for m in settings.modalities
        },
        "StableAge": settings.stable_age,
        "OverwriteInstances": False,
        "StorageCompression": False,
        "SaveJobs": False,
        "Plugins": find_plugins(),
        "PythonScript": str(PLUGIN_SCRIPT),
        "PythonVerbose": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
        "MammoNode": {
            "NodeUrl": f"http://{settings.api_host}:{settings.api_port}",
            "Token": settings.api_token,
            "OwnManufacturer": NODE_MANUFACTURER,
        },
    }


class EmbeddedOrthanc:
    """Start, health-check and stop one Orthanc child process."""

    def __init__(self, settings: Settings, executable: str = "Orthanc") -> None:
        self.settings = settings
        self.executable = shutil.which(executable) or executable
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return (self.settings.data_dir / "orthanc.json").resolve()

    @property
    def log_path(self) -> Path:
        return (self.settings.data_dir / "orthanc.log").resolve()

    def write_config(self) -> Path:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.config_path
        path.write_text(json.dumps(orthanc_config(self.settings), indent=2), encoding="utf-8")
        path.chmod(0o600)  # it holds the HTTP password
        return path

    def start(self, timeout: float = 60.0) -> None:
        if shutil.which(self.executable) is None:
            raise ConfigError("Orthanc is not installed (make setup installs the Debian packages)")
        config = self.write_config()
        env = dict(os.environ, TCP_NODELAY="1")
        self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.executable, str(config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the node, which then stops Orthanc
        )
        self.wait_ready(timeout)
        log.info(
            "orthanc started", extra={"pid": self.process.pid, "http_port": self.settings.http_port}
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        auth = (self.settings.http_user, self.settings.http_password)
        url = f"{self.settings.orthanc_base_url}/system"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PeerUnavailable(
                    f"Orthanc exited with code {self.process.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(url, auth=auth, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PeerUnavailable(f"Orthanc did not answer within {timeout:.0f} s; see {self.log_path}")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
