"""The embedded Orthanc: a generated configuration and a supervised child process.

Never Debian's systemd service (it listens with other plugins on fixed ports): the node
writes its own config under the data directory and starts ``Orthanc`` itself, with
``TCP_NODELAY=1`` (DCMTK leaves Nagle on, which caps small C-STORE at ~11/s on loopback).

Orthanc dies with its node: the child asks Linux for a parent-death signal, so even a
``kill -9`` of the node takes Orthanc down. A stale Orthanc of this data dir (left by a node
killed before that existed, or by a crash between fork and prctl) is found by its pid file
and command line and stopped at start; and the Orthanc the node then talks to must name the
random instance token of the configuration it was just given, never a stranger on the port.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

from node.config import PROJECT_ROOT, Settings
from node.errors import ConfigError, PeerUnavailable
from node.events import EventBus, OrthancRestarted
from node.retry import backoff_seconds
from node.runtime.disk import RESERVE_BYTES
from node.writers.provenance import NODE_MANUFACTURER

log = logging.getLogger(__name__)

PLUGIN_SCRIPT = PROJECT_ROOT / "orthanc" / "mammo_node_plugin.py"
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
REQUIRED_PLUGINS = ("libOrthancDicomWeb.so", "libOrthancPython.so")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RESTART_BACKOFF = (1.0, 60.0)  # first delay before starting an exited Orthanc again, cap
STABLE_SECONDS = 60.0  # running this long, an Orthanc's earlier exits are forgiven
# Loaded before any fork: the child may only make the call, not load a library.
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM (Orthanc shuts down cleanly) when the thread
    that started it dies, and exits at once if the parent is already gone."""

    def in_child() -> None:
        if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:
            os._exit(125)

    return in_child


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


def instance_name(token: str) -> str:
    """The Orthanc ``Name`` (answered by ``/system``) that proves it is this node's own."""
    return f"mammo-node {token}"


def dicom_tls(settings: Settings) -> dict[str, Any]:
    """DICOM TLS of the DICOM port, when the settings name the PEM files: only TLS, and
    only callers whose certificate the configured CA signed (client certificates)."""
    if not settings.dicom_tls_cert_file:
        return {"DicomTlsEnabled": False}
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(Path(settings.dicom_tls_cert_file).resolve()),
        "DicomTlsPrivateKey": str(Path(settings.dicom_tls_key_file).resolve()),
        "DicomTlsTrustedCertificates": str(Path(settings.dicom_tls_ca_file).resolve()),
        "DicomTlsRemoteCertificateRequired": True,
    }


def orthanc_config(settings: Settings, token: str = "") -> dict[str, Any]:
    """The Orthanc configuration of the embedded node (JSON-serialisable)."""
    storage = (settings.data_dir / "orthanc").resolve()
    return {
        "Name": instance_name(token) if token else "mammo-node",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": settings.http_port,
        "DicomPort": settings.dicom_port,
        "DicomAet": settings.aet,
        # Orthanc 1.10 listens on every interface: only local HTTP, with basic auth.
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {settings.http_user: settings.http_password},
        # DICOM: only the called AE title of the node; only known modalities, from their own
        # host, with their AE title exactly as configured (case-sensitive), may associate at
        # all: with no "always allow", Orthanc refuses anyone else at association time.
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "StrictAetComparison": True,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": False,
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
        **dicom_tls(settings),
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
            "ReserveBytes": RESERVE_BYTES,
        },
    }


class EmbeddedOrthanc:
    """Start, health-check and stop one Orthanc child process."""

    def __init__(self, settings: Settings, executable: str = "Orthanc") -> None:
        self.settings = settings
        self.executable = shutil.which(executable) or executable
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.token = secrets.token_hex(8)
        self._started_at = 0.0
        self._failures = 0  # exits in a row
        self._restart_at: float | None = None

    @property
    def config_path(self) -> Path:
        return (self.settings.data_dir / "orthanc.json").resolve()

    @property
    def log_path(self) -> Path:
        return (self.settings.data_dir / "orthanc.log").resolve()

    @property
    def pid_path(self) -> Path:
        return (self.settings.data_dir / "orthanc.pid").resolve()

    def write_config(self) -> Path:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.config_path
        config = orthanc_config(self.settings, self.token)
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        path.chmod(0o600)  # it holds the HTTP password
        return path

    def start(self, timeout: float = 60.0) -> None:
        """Start Orthanc (from the thread that lives as long as the node: the parent-death
        signal follows the thread that forked); the main thread in ``mammo-node up``."""
        if shutil.which(self.executable) is None:
            raise ConfigError("Orthanc is not installed (make setup installs the Debian packages)")
        self.reap_stale()
        self.token = secrets.token_hex(8)
        config = self.write_config()
        env = dict(os.environ, TCP_NODELAY="1")
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.executable, str(config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own process group, so Ctrl-C reaches the node, which then stops Orthanc;
            # the node's session, not a new one: Linux schedules a session as one group
            # (autogroup), and Orthanc in a session of its own would share the CPU with the
            # scoring node as an equal whatever ``worker_nice`` says (C-STORE ingest 0.77 of
            # a standalone Orthanc's, against 0.99 in the node's session).
            process_group=0,
            preexec_fn=die_with_parent(os.getpid()),  # one prctl, libc loaded beforehand
        )
        self.pid_path.write_text(str(self.process.pid), encoding="utf-8")
        self._started_at = time.monotonic()
        self.wait_ready(timeout)
        log.info(
            "orthanc started", extra={"pid": self.process.pid, "http_port": self.settings.http_port}
        )

    def stale_pid(self) -> int | None:
        """The pid of a live Orthanc run on this data dir's config by an earlier node."""
        try:
            pid = int(self.pid_path.read_text(encoding="utf-8").strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = str(self.config_path).encode()
        is_orthanc = bool(argv) and os.path.basename(argv[0]) == b"Orthanc"
        return pid if is_orthanc and ours in argv else None

    def reap_stale(self, timeout: float = 15.0) -> None:
        """Stop an Orthanc left running on this data dir (its node died without it)."""
        pid = self.stale_pid()
        if pid is not None:
            log.warning("stopping a stale Orthanc of this data dir", extra={"pid": pid})
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.stale_pid() == pid and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.stale_pid() == pid:
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

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
                answer = httpx.get(url, auth=auth, timeout=2.0)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if answer.status_code == 200 and answer.json().get("Name") == instance_name(self.token):
                return
            if answer.status_code in (200, 401):
                self.stop()
                raise PeerUnavailable(
                    f"another Orthanc answers on port {self.settings.http_port}, "
                    "not the one this node started"
                )
            time.sleep(0.2)
        self.stop()
        raise PeerUnavailable(f"Orthanc did not answer within {timeout:.0f} s; see {self.log_path}")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def keep_alive(self, bus: EventBus) -> None:
        """One look, from the node's main loop (the thread that started Orthanc, which the
        parent-death signal follows): an Orthanc that exited is started again after a
        backoff that doubles with each exit in a row; each restart is an OrthancRestarted
        event (a metric) and a log line. The node itself keeps running meanwhile."""
        now = time.monotonic()
        if self.is_running():
            if now - self._started_at > STABLE_SECONDS:
                self._failures = 0
            return
        if self._restart_at is None:
            code = self.process.returncode if self.process is not None else None
            self._failures += 1
            delay = backoff_seconds(self._failures, *RESTART_BACKOFF)
            self._restart_at = now + delay
            log.error(
                "orthanc exited; restarting it after a backoff",
                extra={"exit_code": code, "backoff_seconds": delay, "failures": self._failures},
            )
            return
        if now < self._restart_at:
            return
        self._restart_at = None
        try:
            self.start(timeout=30.0)
        except PeerUnavailable as error:
            log.error("orthanc restart failed: %s", error)
            return
        log.warning("orthanc restarted", extra={"failures": self._failures})
        bus.emit(OrthancRestarted(self._failures))

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process is not None:
            self.pid_path.unlink(missing_ok=True)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
