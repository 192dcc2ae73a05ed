"""The container image, built without a daemon (scripts/build-image.sh), run for real.

The node starts from the image's own root filesystem, unpacked from the OCI layout by umoci:
in new mount and PID namespaces, the root filesystem mounted read-only, only the declared
volumes writable, as the image's non-root user; `mammo-node up --demo` must then receive the
demo exam by C-STORE and publish its results. `make image-test` runs this; the first build
takes minutes (debootstrap, the venv), later ones reuse the cached base layer.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGE_DIR = Path(os.environ.get("IMAGE_DIR", REPO / "var" / "image"))
#: Start (Orthanc, the model) and one exam on 2 cores; the demo itself gives up after 180 s.
DEMO_TIMEOUT_SECONDS = 420
MISSING = [
    tool for tool in ("debootstrap", "umoci", "unshare", "chroot") if shutil.which(tool) is None
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.image,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"{', '.join(MISSING)} missing (apt-get install debootstrap umoci; make image-test does)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemonless build and chroot need root"),
    pytest.mark.timeout(3600),
]


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    """Build the image (cached: only what changed is rebuilt) and return build.json."""
    env = dict(os.environ, PYTHON=sys.executable, IMAGE_DIR=str(IMAGE_DIR))
    subprocess.run([str(REPO / "scripts" / "build-image.sh")], cwd=REPO, env=env, check=True)
    report: dict[str, Any] = json.loads((IMAGE_DIR / "build.json").read_text(encoding="utf-8"))
    print(f"\nimage build: {report}")
    return report


def image_config(build: dict[str, Any]) -> dict[str, Any]:
    """The OCI image config of the built tag, read from the layout's index."""
    layout = IMAGE_DIR / "oci"
    tag = build["image"].rsplit(":", 1)[1]

    def blob(digest: str) -> dict[str, Any]:
        algorithm, value = digest.split(":")
        loaded: dict[str, Any] = json.loads((layout / "blobs" / algorithm / value).read_bytes())
        return loaded

    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    (descriptor,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    return blob(blob(descriptor["digest"])["config"]["digest"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_image_config_is_the_dockerfiles(build: dict[str, Any]) -> None:
    config = image_config(build)["config"]
    assert config["User"] == "10001:10001"  # non-root
    assert set(config["Volumes"]) == {"/var/lib/mammo-node", "/tmp"}
    assert config["Entrypoint"] == ["/opt/venv/bin/mammo-node"] and config["Cmd"] == ["up"]
    assert {"4242/tcp", "8042/tcp", "8000/tcp"} <= set(config["ExposedPorts"])
    assert "MAMMO_NODE_DATA_DIR=/var/lib/mammo-node" in config["Env"]


@pytest.fixture
def unpacked(tmp_path: Path) -> Iterator[Path]:
    """Where the image is unpacked: removed afterwards (gigabytes)."""
    directory = tmp_path / "unpacked"
    directory.mkdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_node_processes_the_demo_exam_from_the_image_read_only(
    build: dict[str, Any], unpacked: Path, tmp_path: Path
) -> None:
    bundle = unpacked / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", build["image"], str(bundle)], check=True, capture_output=True
    )
    rootfs = bundle / "rootfs"
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    config = image_config(build)["config"]
    ports = {"DICOM_PORT": free_port(), "HTTP_PORT": free_port(), "API_PORT": free_port()}
    env = [*config["Env"], *(f"MAMMO_NODE_{name}={port}" for name, port in ports.items())]
    # Read-only root, writable only where the image declares volumes; then the image's user
    # and command, exactly as a runtime would start it.
    script = """
set -e
R=$1; DATA=$2; shift 2
mount --bind "$R" "$R" && mount -o remount,bind,ro "$R"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mount --bind "$DATA" "$R/var/lib/mammo-node"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
! touch "$R/opt/written" 2>/dev/null || { echo "root filesystem is writable" >&2; exit 9; }
cd "$R/var/lib/mammo-node"
exec chroot --userspec=10001:10001 "$R" env -i "$@"
"""
    command = [
        "unshare", "-m", "-p", "-f", "--mount-proc", "--kill-child=SIGTERM",
        "sh", "-c", script, "sh", str(rootfs), str(data),
        *env, *config["Entrypoint"], "up", "--demo",
    ]  # fmt: skip
    log = tmp_path / "node.log"
    started = time.monotonic()
    with open(log, "w+b") as output:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=output)
        assert process.stdout is not None
        try:
            # The demo prints one JSON line once the results are out (failures go to stderr).
            ready, _, _ = select.select([process.stdout], [], [], DEMO_TIMEOUT_SECONDS)
            line = process.stdout.readline() if ready else b""
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        output.seek(0)
        stderr = output.read().decode(errors="replace")
    assert line, f"no demo result; node output:\n{stderr[-4000:]}"
    result = json.loads(line)
    print(f"\ndemo from the image: {result}, {time.monotonic() - started:.0f} s from start")
    assert {"SEG", "SR"} <= set(result["outputs"]), result
    assert result["exam_score"] is not None
    # What the node wrote is in the volume, owned by the image's user; nothing elsewhere.
    written = {path.name for path in data.iterdir()}
    assert {"jobs.sqlite", "orthanc"} <= written, written
    assert all(path.stat().st_uid == 10001 for path in data.iterdir())
    assert not (rootfs / "opt" / "written").exists()
