"""DICOM access control of the embedded Orthanc, with real associations on loopback: a known
modality stores from its own host; the same AE title in another case, from another address
(127.0.0.2), or an unknown AE title is refused when it asks for an association."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation

from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam
from tests.harness import make_settings, needs_orthanc, start_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedOrthanc]:
    settings = make_settings(Path(tmp_path_factory.mktemp("access")))
    orthanc = start_orthanc(settings)
    yield orthanc
    orthanc.stop()


def image() -> pydicom.Dataset:
    dataset, _truth = synthetic_exam(121)[0]
    return dataset


def store(orthanc: EmbeddedOrthanc, calling_aet: str, source: str = "127.0.0.1") -> str:
    """``stored``, ``rejected`` (no association) or the C-STORE status as hex."""
    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(DigitalMammographyXRayImageStorageForPresentation)
    assoc = ae.associate(
        "127.0.0.1",
        orthanc.settings.dicom_port,
        ae_title=orthanc.settings.aet,
        bind_address=(source, 0),
    )
    if not assoc.is_established:
        return "rejected" if assoc.is_rejected else "aborted"
    try:
        status = assoc.send_c_store(image())
        return "stored" if status and status.Status == 0 else f"0x{status.get('Status', 0):04X}"
    finally:
        assoc.release()


def test_a_known_modality_stores_from_its_host(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "MODALITY1") == "stored"


def test_the_ae_title_is_compared_case_sensitively(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "modality1") == "rejected"


def test_a_known_ae_title_from_another_host_is_refused(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "MODALITY1", source="127.0.0.2") == "rejected"


def test_an_unknown_caller_is_refused_at_association(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "STRANGER") == "rejected"
