"""Intake reads each instance header from a real Orthanc once per stored file: an exam's
instances arrive one by one and each arrival reads the study again, so without the cache
Orthanc parsed every earlier file once more per arrival. A file stored again under the same
Orthanc id (deleted, then re-sent corrected) is read again."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from node.net.dimse import Peer, send
from node.net.orthanc_rest import OrthancRest
from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam
from node.writers.provenance import NODE_MANUFACTURER
from tests.harness import make_settings, needs_orthanc, start_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedOrthanc]:
    orthanc = start_orthanc(make_settings(Path(tmp_path_factory.mktemp("tags"))))
    yield orthanc
    orthanc.stop()


def test_each_stored_file_is_read_once(orthanc: EmbeddedOrthanc) -> None:
    settings = orthanc.settings
    peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
    exam = [dataset for dataset, _ in synthetic_exam(7301)]
    rest = OrthancRest(
        f"http://127.0.0.1:{settings.http_port}", settings.http_user, settings.http_password
    )
    reads: list[str] = []

    def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/simplified-tags"):
            reads.append(request.url.path.split("/")[2])

    rest._http.event_hooks["request"].append(count)
    try:
        for arrived, dataset in enumerate(exam, start=1):
            send(peer, [dataset])
            (study,) = rest._get("/studies")
            tags = [rest.instance_tags(i) for i in rest.study_instances(study)]
            assert len(tags) == arrived
        assert len(reads) == len(exam) == len(set(reads))  # each header read once

        # Re-sent corrected under the same UIDs: a new stored file, read again.
        first = exam[0]
        old = rest.instance_tags(reads[0])
        rest._call("DELETE", f"/instances/{reads[0]}")
        first.ImageLaterality = "L" if first.ImageLaterality == "R" else "R"
        send(peer, [first])
        again = {t.orthanc_id: t for t in map(rest.instance_tags, rest.study_instances(study))}
        assert len(reads) == len(exam) + 1
        assert again[reads[0]].header["ImageLaterality"] != old.header["ImageLaterality"]
        assert again[reads[0]].header["ImageLaterality"] == first.ImageLaterality
    finally:
        rest.close()


def test_the_nodes_own_series_are_left_out_unread(orthanc: EmbeddedOrthanc) -> None:
    """A study holding the node's results besides the exam: intake's listing leaves the
    results' series out by Orthanc's series Manufacturer, without reading their headers."""
    settings = orthanc.settings
    peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
    exam = [dataset for dataset, _ in synthetic_exam(7302)]
    result = copy.deepcopy(exam[0])
    result.Manufacturer = NODE_MANUFACTURER
    result.SeriesInstanceUID = generate_uid()
    result.SOPInstanceUID = generate_uid()
    send(peer, [*exam, result])
    rest = OrthancRest(
        f"http://127.0.0.1:{settings.http_port}", settings.http_user, settings.http_password
    )
    reads: list[str] = []
    rest._http.event_hooks["request"].append(
        lambda request: (
            reads.append(request.url.path)
            if request.url.path.endswith("/simplified-tags")
            else None
        )
    )
    try:
        (study,) = rest._call(
            "POST",
            "/tools/find",
            json={"Level": "Study", "Query": {"StudyInstanceUID": str(result.StudyInstanceUID)}},
        )
        everything = rest.study_instances(study)
        listed = rest.study_instances(study, except_manufacturer=NODE_MANUFACTURER)
        assert len(everything) == len(exam) + 1
        assert len(listed) == len(exam) and set(listed) < set(everything)
        uids = {rest.instance_tags(i).SOPInstanceUID for i in listed}
        assert uids == {str(ds.SOPInstanceUID) for ds in exam}
        assert len(reads) == len(exam)  # only the exam's headers were read
    finally:
        rest.close()
