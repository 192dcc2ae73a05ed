"""The parts of the scale-out measurement (bench/scale_out.py), as the Helm chart deploys them,
on one machine: one Orthanc with index and DICOM files in PostgreSQL (Debian's
``orthanc-postgresql``, the node's plugin loaded), one ``mammo-node serve`` without inference
workers (the chart's API pod: the plugin's pushes, intake, deliveries) and N ``mammo-node
serve`` worker processes; all of them share one PostgreSQL job store and, as the chart's
ReadWriteMany volume, one data folder (the result outbox). Everything on 127.0.0.1.

Also what the bench reads of the processes: CPU seconds and peak RSS from ``/proc``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from node.config import Settings, load_settings
from node.runtime.embedded import orthanc_config
from tests.harness import free_port, wait_for

POSTGRESQL_PLUGINS = ("libOrthancPostgreSQLIndex.so", "libOrthancPostgreSQLStorage.so")
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
TICKS = os.sysconf("SC_CLK_TCK")


def postgresql_plugins() -> list[str]:
    """The orthanc-postgresql plugins; FileNotFoundError names the Debian package."""
    paths = [PLUGIN_DIR / name for name in POSTGRESQL_PLUGINS]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not in {PLUGIN_DIR} (apt-get install orthanc-postgresql)"
        )
    return [str(p) for p in paths]


# -- /proc readings ------------------------------------------------------------------------


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU seconds of a process (and of its children it has waited for);
    0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of proc(5))
    if with_children:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime
    return used / TICKS


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (PostgreSQL's backends of its postmaster)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # user .. steal (guest time is already in user)
    return (total - idle) / TICKS, total / TICKS


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- the parts -----------------------------------------------------------------------------


@dataclass
class ServeProcess:
    """One ``mammo-node serve``: the API pod (workers=0) or a worker pod."""

    role: str  # "api" or "worker-<i>"
    api_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    cpu_at_kill: float | None = None
    rss_at_kill: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.role} exited with {self.process.returncode}: "
                f"{self.log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            return httpx.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=2).is_success
        except httpx.HTTPError:
            return False

    def cpu(self) -> float:
        return self.cpu_at_kill if self.cpu_at_kill is not None else cpu_seconds(self.pid)

    def peak_rss(self) -> float:
        return self.rss_at_kill if self.rss_at_kill is not None else peak_rss_mb(self.pid)

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a node failure would; readings kept first."""
        self.cpu_at_kill, self.rss_at_kill = cpu_seconds(self.pid), peak_rss_mb(self.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Cluster:
    """Orthanc on PostgreSQL, the API process and ``workers`` worker processes, in ``root``."""

    server_url: str  # the PostgreSQL server (database postgres)
    root: Path
    name: str  # per run: the two databases are <name>_orthanc and <name>_jobs
    workers: int
    model: str
    threads: int
    lease_seconds: float
    settings: Settings = field(init=False)
    orthanc: subprocess.Popen[bytes] | None = None
    serve: list[ServeProcess] = field(default_factory=list)

    @property
    def jobs_url(self) -> str:
        return str(sa.make_url(self.server_url).set(database=f"{self.name}_jobs"))

    @property
    def postmaster_pid(self) -> int:
        engine = sa.create_engine(self.server_url)
        with engine.connect() as connection:
            backend = int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
            parent = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        engine.dispose()
        return parent

    def postgresql_cpu(self) -> float:
        """CPU seconds of the PostgreSQL server: postmaster, live backends, ended backends."""
        postmaster = self.postmaster_pid
        return cpu_seconds(postmaster, with_children=True) + sum(
            cpu_seconds(pid) for pid in children_of(postmaster)
        )

    def start(self, timeout: float = 180.0) -> None:
        data_dir = self.root / self.name
        data_dir.mkdir(parents=True)
        self.settings = load_settings(
            environ={},
            overrides={
                "data_dir": data_dir,
                "dicom_port": free_port(),
                "http_port": free_port(),
                "api_port": free_port(),
                "stable_age": 1,
                "http_password": "bench-password",
                "api_token": "bench-token",
                "database_url": self.jobs_url,
                "model": self.model,
                "lease_seconds": self.lease_seconds,
            },
        )
        engine = sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for database in (f"{self.name}_orthanc", f"{self.name}_jobs"):
                connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
        engine.dispose()
        self._start_orthanc(data_dir, timeout)
        # The API first: it takes the data folder's lock, so no worker process releases
        # the leases of another at start-up (they all share this host and folder).
        self.serve.append(self._start_serve("api", self.settings.api_port, 0))
        wait_for("the API process", self.serve[0].healthy, timeout, every=0.5)
        for index in range(self.workers):
            self.serve.append(self._start_serve(f"worker-{index}", free_port(), 1))
        for process in self.serve[1:]:
            wait_for(f"{process.role}", process.healthy, timeout, every=0.5)

    def _start_orthanc(self, data_dir: Path, timeout: float) -> None:
        server = sa.make_url(self.server_url)
        config = orthanc_config(self.settings)
        config["Plugins"] = [*config["Plugins"], *postgresql_plugins()]
        config["PostgreSQL"] = {
            "EnableIndex": True,
            "EnableStorage": True,
            "Host": server.host,
            "Port": server.port,
            "Database": f"{self.name}_orthanc",
            "Username": server.username,
            "Password": server.password or "",
            "EnableSsl": False,
            "Lock": True,  # one Orthanc, as the chart's StatefulSet with one replica
        }
        config["TemporaryDirectory"] = str(data_dir)
        path = data_dir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        log = open(data_dir / "orthanc.log", "wb")  # the child holds it; closed by the OS
        self.orthanc = subprocess.Popen(
            ["Orthanc", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        log.close()
        auth = (self.settings.http_user, self.settings.http_password)

        def up() -> bool:
            assert self.orthanc is not None
            if self.orthanc.poll() is not None:
                raise RuntimeError((data_dir / "orthanc.log").read_text(errors="replace")[-2000:])
            try:
                answer = httpx.get(f"{self.settings.orthanc_base_url}/system", auth=auth)
                return answer.is_success
            except httpx.HTTPError:
                return False

        wait_for("Orthanc on PostgreSQL", up, timeout, every=0.5)

    def _start_serve(self, role: str, api_port: int, workers: int) -> ServeProcess:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAMMO_NODE_")}
        env.update(
            {
                "MAMMO_NODE_DATA_DIR": str(s.data_dir),
                "MAMMO_NODE_API_PORT": str(api_port),
                "MAMMO_NODE_HTTP_PORT": str(s.http_port),
                "MAMMO_NODE_DICOM_PORT": str(s.dicom_port),
                "MAMMO_NODE_HTTP_PASSWORD": s.http_password,
                "MAMMO_NODE_API_TOKEN": s.api_token,
                "MAMMO_NODE_DATABASE_URL": s.database_url,
                "MAMMO_NODE_WORKERS": str(workers),
                "MAMMO_NODE_LEASE_SECONDS": str(s.lease_seconds),
                "MAMMO_NODE_STABLE_AGE": str(s.stable_age),
                "PYTHONUNBUFFERED": "1",
                # torch's intra-op threads per process (the chart's CPU limit does this on k8s)
                "OMP_NUM_THREADS": str(self.threads),
                "MKL_NUM_THREADS": str(self.threads),
            }
        )
        if self.model:
            env["MAMMO_NODE_MODEL"] = self.model
        log_path = s.data_dir / f"{role}.log"
        log = open(log_path, "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return ServeProcess(role, api_port, process, log_path)

    @property
    def workers_alive(self) -> list[ServeProcess]:
        return [p for p in self.serve[1:] if p.process.poll() is None]

    def stop(self) -> None:
        for process in reversed(self.serve):
            process.stop()
        if self.orthanc is not None and self.orthanc.poll() is None:
            self.orthanc.terminate()
            try:
                self.orthanc.wait(30)
            except subprocess.TimeoutExpired:
                self.orthanc.kill()
                self.orthanc.wait(5)
        time.sleep(0.5)  # let PostgreSQL see the connections close before the next run
