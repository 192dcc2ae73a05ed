"""The outbox encodes each output once; destinations are sent those bytes as stored."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from node.config import Destination
from node.delivery.outbox import Outbox
from node.delivery.publishers import publisher_for
from node.dicom.part10 import part10_bytes
from node.errors import FinalError
from node.synthetic.dicom import synthetic_exam
from node.writers.outputs import Output
from tests.harness import make_settings, orthanc_destination, start_orthanc


def outputs() -> list[Output]:
    images = [ds for ds, _ in synthetic_exam(11, rows=64, columns=64)]
    return [Output("seg", images[0]), Output("seg", images[1]), Output("gsps", images[2])]


def test_each_output_is_a_part10_file_known_by_its_meta(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    written = outputs()
    outbox.write(1, written)

    files = outbox.files(1, ["seg", "gsps", "tid1500"])  # no tid1500 of this job: skipped
    by_uid = {str(output.dataset.SOPInstanceUID): output.dataset for output in written}
    assert sorted(f.sop_instance_uid for f in files) == sorted(by_uid)
    for file in files:
        dataset = by_uid[file.sop_instance_uid]
        assert file.sop_class_uid == dataset.SOPClassUID
        assert file.transfer_syntax_uid == pydicom.uid.ExplicitVRLittleEndian
        assert file.read_bytes() == part10_bytes(dataset)  # the one encoding, as written
        assert file.dataset().SOPInstanceUID == file.sop_instance_uid
    assert [f.sop_instance_uid for f in outbox.files(1, ["gsps"])] == [
        str(written[2].dataset.SOPInstanceUID)
    ]


def test_a_file_that_is_not_dicom_is_a_final_error(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.write(1, outputs())
    broken = outbox.folder(1) / "seg" / "1.2.3.dcm"
    broken.write_bytes(b"not DICOM at all" * 20)
    with pytest.raises(FinalError, match=r"1\.2\.3\.dcm is not a DICOM file"):
        outbox.files(1, ["seg"])


def test_dicomweb_destination_stores_the_outbox_bytes_as_written(tmp_path: Path) -> None:
    """STOW-RS sends the files without decoding them: the archive holds the same bytes."""
    settings = make_settings(tmp_path / "data")
    orthanc = start_orthanc(settings)
    try:
        outbox = Outbox(tmp_path / "outbox")
        outbox.write(7, outputs())
        files = outbox.files(7, ["seg", "gsps"])
        publisher = publisher_for(Destination(**orthanc_destination(settings)))
        assert publisher.publish(files) == len(files)
        assert publisher.publish(files) == len(files)  # sent again: already held, stored

        auth = (settings.http_user, settings.http_password)
        with httpx.Client(base_url=settings.orthanc_base_url, auth=auth) as http:
            for file in files:
                found = http.post(
                    "/tools/find",
                    json={"Level": "Instance", "Query": {"SOPInstanceUID": file.sop_instance_uid}},
                ).json()
                assert len(found) == 1
                assert http.get(f"/instances/{found[0]}/file").content == file.read_bytes()
    finally:
        orthanc.stop()
