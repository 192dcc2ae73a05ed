"""The node's checks, one line each: configuration, ports, Orthanc and its plugins,
DICOMweb, the node's API, database, model files, destinations, disk space and clock.

``mammo-node doctor`` prints them; the admin console shows them. A check never raises: it
catches the node's own errors (and the system's OSError) and reports them as ``fail``.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal

import httpx
import sqlalchemy as sa

from node.config import Destination, Settings
from node.db import create_engine
from node.delivery.echo import echo_destination
from node.errors import MammoNodeError
from node.models.lifecycle import live_model_ref
from node.models.registry import load_model
from node.models.trained_on import synthetic_only_warning
from node.net.orthanc_rest import OrthancRest
from node.runtime.runfile import RunningNode

Status = Literal["ok", "warn", "fail"]
MIN_FREE_BYTES = 1 << 30  # below this Orthanc stops storing and the outbox cannot grow
MAX_CLOCK_SKEW_SECONDS = 60.0  # DICOM dates and the audit trail need the same time


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():4s}  {self.name:13s} {self.detail}"


def _guard(name: str, probe: Callable[[], tuple[Status, str]]) -> Check:
    try:
        status, detail = probe()
    except (MammoNodeError, OSError, httpx.HTTPError, sa.exc.SQLAlchemyError) as error:
        return Check(name, "fail", str(error).splitlines()[0])
    return Check(name, status, detail)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return True
    except OSError:
        return False


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings, running: RunningNode | None) -> Check:
    ports = {"API": settings.api_port}
    if not settings.orthanc_url:  # the embedded Orthanc: its ports are the node's
        ports |= {"DICOM": settings.dicom_port, "HTTP": settings.http_port}
    if running is not None:
        silent = [f"{name} {port}" for name, port in ports.items() if not _listening(port)]
        if silent:
            return Check("ports", "fail", f"nothing listens on {', '.join(silent)}")
        return Check("ports", "ok", "listening: " + ", ".join(f"{n} {p}" for n, p in ports.items()))
    taken = [f"{name} {port}" for name, port in ports.items() if not _free(port)]
    if taken:
        return Check("ports", "fail", f"in use by another program: {', '.join(taken)}")
    return Check(
        "ports", "ok", "free for the node: " + ", ".join(f"{n} {p}" for n, p in ports.items())
    )


def _orthanc_checks(settings: Settings, running: RunningNode | None) -> list[Check]:
    if running is None and not settings.orthanc_url:
        return [Check("orthanc", "warn", "not running (`mammo-node up` starts it)")]
    orthanc = OrthancRest(
        settings.orthanc_base_url, settings.http_user, settings.http_password, timeout=5.0
    )
    try:

        def system() -> tuple[Status, str]:
            info = orthanc.ping()
            return "ok", f"Orthanc {info.get('Version', '?')} at {settings.orthanc_base_url}"

        def plugins() -> tuple[Status, str]:
            loaded = orthanc.plugins()
            missing = [name for name in ("python", "dicom-web") if name not in loaded]
            if missing:
                return "fail", f"Orthanc lacks the plugins {', '.join(missing)}"
            return "ok", f"loaded: {', '.join(sorted(loaded))}"

        def clock() -> tuple[Status, str]:
            theirs = datetime.strptime(orthanc.now(), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            skew = abs((datetime.now(UTC) - theirs).total_seconds())
            status: Status = "ok" if skew <= MAX_CLOCK_SKEW_SECONDS else "fail"
            return (
                status,
                f"Orthanc's clock is {skew:.0f} s from ours (limit {MAX_CLOCK_SKEW_SECONDS:.0f} s)",
            )

        def dicomweb() -> tuple[Status, str]:
            source = Destination(
                name="orthanc",
                url=f"{settings.orthanc_base_url}/dicom-web",
                username=settings.http_user,
                password=settings.http_password,
                timeout_seconds=5.0,
            )
            return "ok", echo_destination(source)

        first = _guard("orthanc", system)
        if first.status == "fail":
            return [first]
        return [
            first,
            _guard("plugins", plugins),
            _guard("dicomweb", dicomweb),
            _guard("clock", clock),
        ]
    finally:
        orthanc.close()


def check_api(running: RunningNode | None) -> Check:
    if running is None:
        return Check("api", "warn", "no node runs with this data folder")

    def probe() -> tuple[Status, str]:
        response = httpx.get(f"{running.api_url}/healthz", timeout=5.0)
        report = response.json()
        if response.status_code != 200:
            return "fail", f"{running.api_url}/healthz: {report}"
        return "ok", f"{running.api_url} (pid {running.pid}), model {report.get('model')}"

    return _guard("api", probe)


def check_database(settings: Settings) -> Check:
    def probe() -> tuple[Status, str]:
        if not settings.database_url and not (settings.data_dir / "jobs.sqlite").exists():
            return "warn", f"{settings.data_dir / 'jobs.sqlite'} not created yet (the node does)"
        engine = create_engine(settings.effective_database_url)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
                tables = sa.inspect(connection).get_table_names()
        finally:
            engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        if "jobs" not in tables:
            return "fail", f"{where} has no jobs table"
        return "ok", f"{where} ({len(tables)} tables)"

    return _guard("database", probe)


def check_model(settings: Settings) -> Check:
    def probe() -> tuple[Status, str]:
        ref = live_model_ref(settings.models_dir, settings.model)
        model = load_model(settings.models_dir, ref, device="cpu")
        warning = synthetic_only_warning(model.spec)
        if warning:
            return "warn", warning
        return "ok", f"{ref}: model.yaml and weights load"

    return _guard("model", probe)


def _echo(destination: Destination) -> tuple[Status, str]:
    return "ok", echo_destination(destination)


def check_destinations(settings: Settings, running: RunningNode | None) -> list[Check]:
    checks = []
    for destination in settings.effective_destinations:
        name = f"dest {destination.name}"
        if not settings.destinations and running is None and not settings.orthanc_url:
            checks.append(Check(name, "warn", "the embedded Orthanc is not running"))
            continue
        checks.append(_guard(name, partial(_echo, destination)))
    return checks


def check_disk(data_dir: Path) -> Check:
    def probe() -> tuple[Status, str]:
        existing = data_dir.resolve()
        while not existing.exists():
            existing = existing.parent
        usage = shutil.disk_usage(existing)
        detail = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB at {existing}"
        if usage.free < MIN_FREE_BYTES:
            return "fail", detail + " (needs 1 GiB)"
        if usage.free < usage.total * 0.1:
            return "warn", detail + " (under 10%)"
        return "ok", detail

    return _guard("disk", probe)


def run_checks(settings: Settings, running: RunningNode | None) -> list[Check]:
    """Every check, in the order an operator fixes things."""
    node = (
        Check("node", "ok", f"pid {running.pid} since {running.started}, API {running.api_url}")
        if running is not None
        else Check("node", "warn", f"no node runs with data folder {settings.data_dir}")
    )
    return [
        node,
        check_ports(settings, running),
        *_orthanc_checks(settings, running),
        check_api(running),
        check_database(settings),
        check_model(settings),
        *check_destinations(settings, running),
        check_disk(settings.data_dir),
    ]
