"""The Dockerfile and the daemonless build are one build: same steps, same config.

Fast checks for `make test`; the build itself and the node running from the image are in
tests/test_image.py (`make image-test`).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def oci_config() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oci_config", REPO / "image" / "oci_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dockerfile_runs_the_shared_install_steps_in_order() -> None:
    module = oci_config()
    steps = [rest for word, rest in module.instructions(DOCKERFILE.read_text()) if word == "RUN"]
    assert steps == [
        f"/opt/mammo-node/image/install.sh {phase}" for phase in ("system", "python", "app")
    ]
    build = (REPO / "scripts" / "build-image.sh").read_text()
    for phase in ("system", "python", "app"):
        assert f"/opt/mammo-node/image/install.sh {phase}" in build


def test_daemonless_image_config_comes_from_the_dockerfile() -> None:
    arguments = oci_config().umoci_arguments(DOCKERFILE)
    assert "--config.user=10001:10001" in arguments
    assert {"--config.volume=/var/lib/mammo-node", "--config.volume=/tmp"} <= set(arguments)
    assert "--config.entrypoint=/opt/venv/bin/mammo-node" in arguments
    assert "--config.env=MAMMO_NODE_DATA_DIR=/var/lib/mammo-node" in arguments
    assert re.search(r"^HEALTHCHECK .*healthcheck\.py", DOCKERFILE.read_text(), re.M)


def test_chart_runs_the_image_as_its_user_with_its_packages() -> None:
    values = yaml.safe_load((REPO / "helm" / "mammo-node" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001  # the image's USER
    packages = (REPO / "image" / "apt-packages.txt").read_text().split()
    # What the chart's Orthanc loads (libOrthancPostgreSQL*, Python, DICOMweb) is in the image.
    assert {"orthanc", "orthanc-python", "orthanc-dicomweb", "orthanc-postgresql"} <= set(packages)
