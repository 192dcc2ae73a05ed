"""Exams, not series: a missing view makes an incomplete exam after the assembly timeout,
and a late image makes a new revision of the results that names the one it replaces."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    orthanc_destination,
    start_orthanc,
    wait_for,
)
from tests.validators import dciodvfy_errors, dsrdump

pytestmark = [pytest.mark.slow, needs_orthanc]

ASSEMBLY_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    settings = make_settings(tmp_path_factory.mktemp("assembly"), lease_seconds=30.0)
    orthanc = start_orthanc(settings)
    back = orthanc_destination(settings)
    process = NodeProcess(
        settings,
        extra_env={
            "MAMMO_NODE_DESTINATIONS": yaml.safe_dump([back]),
            "MAMMO_NODE_ASSEMBLY_TIMEOUT_SECONDS": str(ASSEMBLY_TIMEOUT),
        },
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()
        orthanc.stop()


def store(node: NodeProcess, datasets: list[pydicom.Dataset]) -> None:
    settings = node.settings
    outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
    assert outcome.sent == len(datasets)


def test_missing_view_gives_an_incomplete_exam_after_the_timeout(node: NodeProcess) -> None:
    exam = [ds for ds, _ in synthetic_exam(501)]
    kept = [ds for ds in exam if (ds.ImageLaterality, ds.ViewPosition) != ("L", "MLO")]
    study_uid = str(kept[0].StudyInstanceUID)
    store(node, kept)

    queued = wait_for("the exam's job", lambda: node.jobs(study_uid), timeout=30)[0]
    assert queued["payload"]["missing_views"] == ["L MLO"]
    assert queued["next_attempt_at"] >= queued["created_at"] + ASSEMBLY_TIMEOUT - 0.01

    job = node.wait_final(study_uid)
    assert job["state"] == "done", job["last_error"]
    assert job["result"]["complete"] is False
    assert job["result"]["missing_views"] == ["L MLO"]
    assert len(job["result"]["images"]) == 3
    history = node.get(f"/api/v1/jobs/{job['id']}")["history"]
    started = next(h["at"] for h in history if h["to_state"] == "fetching")
    assert started >= queued["created_at"] + ASSEMBLY_TIMEOUT - 0.01


def test_late_image_gives_a_new_revision_that_names_the_old_one(
    node: NodeProcess, tmp_path: Path
) -> None:
    exam = [ds for ds, _ in synthetic_exam(502)]
    study_uid = str(exam[0].StudyInstanceUID)
    store(node, exam)
    first = node.wait_final(study_uid)
    assert first["state"] == "done" and first["result"]["revision"] == 0

    late = exam[0].copy()  # a repeated R CC, sent after the results
    late.SOPInstanceUID = generate_uid()
    late.file_meta.MediaStorageSOPInstanceUID = late.SOPInstanceUID
    late.InstanceNumber = 9
    store(node, [late])

    def revised() -> dict[str, object] | None:
        jobs = [j for j in node.jobs(study_uid) if j["payload"].get("revision") == 1]
        return jobs[0] if jobs and jobs[0]["state"] in ("done", "failed") else None

    second = wait_for("revision 1 of the results", revised, timeout=120, every=0.3)
    assert second["state"] == "done", second["last_error"]
    result = second["result"]
    assert result["revision"] == 1 and len(result["images"]) == 5  # type: ignore[index]
    assert len(node.jobs(study_uid)) == 2

    old_sr = next(o for o in first["result"]["outputs"] if o["Modality"] == "SR")
    new_sr = next(o for o in result["outputs"] if o["Modality"] == "SR")  # type: ignore[index]
    assert new_sr["SOPInstanceUID"] != old_sr["SOPInstanceUID"]

    client = OrthancClient(node.settings)
    instances = {i["MainDicomTags"]["SOPInstanceUID"]: i for i in client.study_instances(study_uid)}
    assert old_sr["SOPInstanceUID"] in instances and new_sr["SOPInstanceUID"] in instances
    data = client.instance_file(instances[new_sr["SOPInstanceUID"]]["ID"])
    sr = pydicom.dcmread(io.BytesIO(data))
    predecessor = sr.PredecessorDocumentsSequence[0]  # PS3.3 C.17.2.3
    assert predecessor.StudyInstanceUID == study_uid
    reference = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == old_sr["SOPInstanceUID"]
    path = tmp_path / "revised.dcm"
    path.write_bytes(data)
    assert dciodvfy_errors(path) == []
    assert "Revision 1" in dsrdump(path)
