"""Run the reference validators (dicom3tools dciodvfy, DCMTK dsrdump/dsr2html, PixelMed's
DicomSRValidator) on datasets.

Every object the node writes is checked by tools it did not write, as DESIGN.md asks.
A test that needs a missing binary is skipped with the reason, never silently passed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

__all__ = [
    "dciodvfy_errors",
    "dciodvfy_output",
    "dsr2html",
    "dsrdump",
    "pixelmed_sr_errors",
    "pixelmed_sr_output",
    "require",
    "write_part10",
]

_TIMEOUT_S = 60
_PACKAGES = {"dciodvfy": "dicom3tools", "java": "default-jre-headless"}
_PIXELMED_JARS = Path("/usr/share/java")
# The validator evaluates PS3.16's templates as XPath; the JDK's default limits stop it.
_JAVA_XPATH_UNLIMITED = (
    "-Djdk.xml.xpathExprOpLimit=0",
    "-Djdk.xml.xpathExprGrpLimit=0",
    "-Djdk.xml.xpathTotalOpLimit=0",
)


def require(binary: str) -> str:
    """Path of ``binary``, or skip the calling test saying which package provides it."""
    path = shutil.which(binary)
    if path is None:
        package = _PACKAGES.get(binary, "dcmtk")
        pytest.skip(f"{binary} not installed (Debian package {package})")
    return path


def write_part10(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a Part 10 file with a meta header built from the dataset."""
    ds.save_as(path, enforce_file_format=True)
    return path


def _as_path(path_or_dataset: str | Path | Dataset, directory: Path) -> Path:
    if isinstance(path_or_dataset, Dataset):
        return write_part10(path_or_dataset, directory / "object.dcm")
    return Path(path_or_dataset)


def dciodvfy_output(path_or_dataset: str | Path | Dataset) -> list[str]:
    """All lines dciodvfy prints about the object (it writes its findings to stderr)."""
    binary = require("dciodvfy")
    with tempfile.TemporaryDirectory() as tmp:
        path = _as_path(path_or_dataset, Path(tmp))
        done = subprocess.run(
            [binary, "-new", str(path)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    return (done.stdout + done.stderr).splitlines()


def dciodvfy_errors(path_or_dataset: str | Path | Dataset) -> list[str]:
    """The "Error" lines dciodvfy prints; an empty list means the IOD is valid."""
    return [line for line in dciodvfy_output(path_or_dataset) if line.startswith("Error")]


def _dcmtk(binary: str, path: str | Path, *args: str) -> str:
    done = subprocess.run(
        [require(binary), *args, str(path)],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{binary} failed ({done.returncode}) on {path}: {done.stderr}")
    return done.stdout


def dsrdump(path: str | Path) -> str:
    """The SR content tree as dsrdump prints it; raises AssertionError if dsrdump rejects it."""
    return _dcmtk("dsrdump", path)


def dsr2html(path: str | Path) -> str:
    """The SR rendered to HTML by dsr2html; raises AssertionError if it fails."""
    return _dcmtk("dsr2html", path)


def pixelmed_sr_output(path_or_dataset: str | Path | Dataset) -> list[str]:
    """All lines PixelMed's DicomSRValidator prints: the IOD check, then the content tree
    checked against the PS3.16 template its root names (TID 4000, TID 1500, ...)."""
    java = require("java")
    if not (_PIXELMED_JARS / "pixelmed.jar").exists():
        pytest.skip("PixelMed not installed (Debian package libpixelmed-java)")
    classpath = ":".join(str(jar) for jar in sorted(_PIXELMED_JARS.glob("*.jar")))
    with tempfile.TemporaryDirectory() as tmp:
        path = _as_path(path_or_dataset, Path(tmp))
        done = subprocess.run(
            [
                java,
                *_JAVA_XPATH_UNLIMITED,
                "-cp",
                classpath,
                "com.pixelmed.validate.DicomSRValidator",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S * 3,
            check=False,
        )
    return (done.stdout + done.stderr).splitlines()


def pixelmed_sr_errors(path_or_dataset: str | Path | Dataset) -> list[str]:
    """The "Error" lines of :func:`pixelmed_sr_output`; empty when the SR conforms."""
    return [line for line in pixelmed_sr_output(path_or_dataset) if line.startswith("Error")]
