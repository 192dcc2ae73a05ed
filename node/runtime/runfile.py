"""The runtime file: ``<data_dir>/node.json``, written by ``up`` and ``serve`` once the node
listens and removed when it stops, so that every other command finds the running node
(its ports, URLs and credentials) instead of assuming the default ports.

It holds the node's generated secrets, so it is readable by its owner only (0600), like
the Orthanc configuration the embedded Orthanc writes beside it. A file whose process is
gone (a node killed hard) is stale and ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node import __version__
from node.config import Settings
from node.errors import ConfigError

RUNTIME_FILE = "node.json"

#: The runtime files this process wrote: a file naming this process's pid that it did not
#: write comes from another PID namespace (a container restarted on the same volume, its
#: node again pid 1) and is stale, or the restarted node would refuse to start for good.
_WRITTEN_HERE: set[Path] = set()

#: The settings a running node decides at start-up that other commands must follow.
RUNTIME_SETTINGS = (
    "aet",
    "dicom_port",
    "http_port",
    "api_host",
    "api_port",
    "viewer_port",
    "orthanc_url",
    "http_user",
    "http_password",
    "api_token",
    "models_dir",  # so that `models promote` changes the registry the node follows
)


@dataclass(frozen=True)
class RunningNode:
    """What ``node.json`` says about the node that wrote it."""

    pid: int
    started: str
    version: str
    data_dir: str
    api_url: str
    orthanc_url: str
    viewer_url: str
    settings: dict[str, Any]  # RUNTIME_SETTINGS, as the node runs them (paths as text)

    @property
    def api_token(self) -> str:
        return str(self.settings.get("api_token", ""))


def runtime_path(data_dir: Path) -> Path:
    return Path(data_dir) / RUNTIME_FILE


def write_runtime_file(settings: Settings, viewer_url: str | None = None) -> Path:
    """Record the running node (this process) in its data folder, readable by its owner."""
    values = {name: getattr(settings, name) for name in RUNTIME_SETTINGS}
    values["models_dir"] = str(settings.models_dir.resolve())
    running = RunningNode(
        pid=os.getpid(),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        data_dir=str(settings.data_dir.resolve()),
        api_url=f"http://{settings.api_host}:{settings.api_port}",
        orthanc_url=settings.orthanc_base_url,
        viewer_url=viewer_url or "",
        settings=values,
    )
    path = runtime_path(settings.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(asdict(running), handle, indent=2)
    partial.replace(path)
    _WRITTEN_HERE.add(path.resolve())
    return path


def remove_runtime_file(data_dir: Path) -> None:
    """Forget the node on stop; only this process's own file is removed."""
    path = runtime_path(data_dir)
    running = read_runtime_file(data_dir)
    if running is not None and running.pid == os.getpid():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_runtime_file(data_dir: Path) -> RunningNode | None:
    """The node running with ``data_dir``, or None when none does (no file, or a stale one)."""
    path = runtime_path(data_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the runtime file {path}: {error}") from error
    try:
        running = RunningNode(**raw)
    except TypeError as error:
        raise ConfigError(f"runtime file {path} is not one this version writes: {error}") from error
    if running.pid == os.getpid() and path.resolve() not in _WRITTEN_HERE:
        return None  # our pid, not our file: see _WRITTEN_HERE
    return running if _alive(running.pid) else None
