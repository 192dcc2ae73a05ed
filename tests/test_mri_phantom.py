"""The synthetic DCE study: valid classic MR images, known kinetics, and `synth --modality MR`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from validators import dciodvfy_errors, dciodvfy_output

from node.mri.phantom import CURVE_CODES, enhancement_curve, make_dce_phantom
from node.mri.synthetic_dicom import MR_IMAGE_STORAGE, dce_study

# General Series Laterality of a bilateral breast study is empty (both breasts imaged); the
# subtraction series' ImageType value 3 is a scanner's own term, as real scanners write it.
_KNOWN = ("Laterality(0020,0060)> - is only permitted to be empty", "<SUBTRACTION>")


def test_every_series_kind_passes_dciodvfy() -> None:
    datasets, _ = dce_study(3)
    firsts = {str(ds.SeriesInstanceUID): ds for ds in reversed(datasets)}
    assert len(firsts) == 8  # T2, pre + 5 post, subtraction
    for ds in firsts.values():
        lines = dciodvfy_output(ds)
        assert dciodvfy_errors(ds) == [], lines
        assert [
            line
            for line in lines
            if line.startswith("Warning") and not any(k in line for k in _KNOWN)
        ] == []


def test_phases_carry_their_temporal_position_and_time() -> None:
    datasets, phantom = dce_study(3)
    dce = [
        ds for ds in datasets if "DCE" in ds.SeriesDescription and "SUB" not in ds.SeriesDescription
    ]
    assert {int(ds.TemporalPositionIdentifier) for ds in dce} == set(range(1, 7))
    assert all(ds.SOPClassUID == MR_IMAGE_STORAGE for ds in datasets)
    assert phantom.times_s == (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
    assert "ContrastBolusAgent" not in dce[0] and "ContrastBolusAgent" in dce[-1]


@pytest.mark.parametrize("curve", ["persistent", "plateau", "washout"])
def test_lesion_curves_are_what_they_claim(curve: str) -> None:
    phantom = make_dce_phantom(seed=2, noise=0.0)
    index = next(i for i, les in enumerate(phantom.lesions) if les.curve == curve)
    signal = phantom.phases[:, phantom.labels == index + 1].mean(axis=1)
    delayed = 100 * (signal[-1] - signal[2]) / signal[2]
    expected = {"persistent": delayed > 10, "plateau": abs(delayed) <= 10, "washout": delayed < -10}
    assert expected[curve], (curve, delayed)
    assert 100 * (signal[2] - signal[0]) / signal[0] > 100
    assert enhancement_curve(curve, 1.5, 0.0) == 0.0  # type: ignore[arg-type]
    assert np.all(phantom.voxel_curve[phantom.labels == index + 1] == CURVE_CODES[curve])  # type: ignore[index]


def test_the_phantom_refuses_too_few_phases() -> None:
    with pytest.raises(ValueError, match="2 post-contrast"):
        make_dce_phantom(post_phases=1)


def test_synth_writes_an_mr_study(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "synth", "--modality", "MR", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == 8 * 24
    assert pydicom.dcmread(paths[0]).Modality == "MR"
