"""The live exam-aware model through a real Orthanc: one woman's two breasts as an MG exam by
C-STORE, each breast compared with the other (``compared`` in the job result)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from node.models.lifecycle import live_model_ref
from node.net.dimse import Peer, send
from node.synthetic.dicom import mammogram_dataset
from tests.harness import NodeProcess, make_settings, needs_orthanc, start_orthanc

MIAS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mias-dev"
MODELS = Path(__file__).resolve().parents[1] / "models"

pytestmark = [
    pytest.mark.slow,
    needs_orthanc,
    pytest.mark.skipif(
        not (MIAS / "mdb001.png").exists(),
        reason=f"mini-MIAS development images are not at {MIAS} (research licence; not shipped)",
    ),
]


def woman() -> list[pydicom.Dataset]:
    """mdb001 (right MLO) and mdb002 (left MLO), one woman, as MG images of one study."""
    study = generate_uid()
    out = []
    for number, (name, side) in enumerate((("mdb001", "R"), ("mdb002", "L")), start=1):
        pixels = np.asarray(Image.open(MIAS / f"{name}.png").convert("L"), dtype=np.float32)
        out.append(
            mammogram_dataset(
                np.round(pixels / 255.0 * 4095.0).astype(np.uint16),
                laterality=side,
                view="MLO",
                patient_id="MIAS-001",
                patient_name="MIAS^001",
                study_instance_uid=study,
                series_instance_uid=generate_uid(),
                sop_instance_uid=generate_uid(),
                instance_number=number,
            )
        )
    return out


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    settings = make_settings(tmp_path, model="", lease_seconds=120.0)  # the registry's live model
    orthanc = start_orthanc(settings)
    process = NodeProcess(settings)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        orthanc.stop()


def test_two_breasts_of_one_woman_are_compared_with_each_other(node: NodeProcess) -> None:
    datasets = woman()
    settings = node.settings
    outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
    assert outcome.sent == 2, outcome

    job = node.wait_final(str(datasets[0].StudyInstanceUID), timeout=300.0)
    assert job["state"] == "done", job["last_error"]
    result = job["result"]
    assert result["model"] == live_model_ref(MODELS, "")
    assert sorted(i["ImageLaterality"] for i in result["images"]) == ["L", "R"]
    assert all(image["compared"] is True for image in result["images"])
    assert all(0.0 <= image["score"] <= 1.0 for image in result["images"])
