"""Breast DCE-MRI end to end, with real parts: Orthanc + plugin, C-STORE of a synthetic DCE
study, the node process, its results STOW-RS'd back into Orthanc, and dciodvfy on every
object the node wrote (PixelMed's DicomSRValidator runs on the MR SR in test_mri_writers)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from node.mri import KINETIC_CAD
from node.mri.frames import ENHANCED_MR_IMAGE_STORAGE
from node.mri.phantom import DcePhantom, make_dce_phantom
from node.mri.synthetic_dicom import dce_study
from node.net.dimse import Peer, send
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    start_orthanc,
    wait_for,
)
from tests.validators import dciodvfy_errors, dsrdump

pytestmark = [pytest.mark.slow, needs_orthanc]

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    settings = make_settings(tmp_path_factory.mktemp("mri-node"))
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        orthanc.stop()


def small_study(seed: int) -> tuple[list[pydicom.Dataset], DcePhantom]:
    """T2, six DCE phases and a subtraction series of 12 slices of 64 x 96 (96 images)."""
    return dce_study(seed, make_dce_phantom(seed=seed, slices=12, rows=64, columns=96))


def store(node: NodeProcess, datasets: list[pydicom.Dataset]) -> None:
    peer = Peer("127.0.0.1", node.settings.dicom_port, node.settings.aet, "MODALITY1")
    outcome = send(peer, datasets)
    assert outcome.sent == len(datasets), outcome


def decisions(node: NodeProcess, study_uid: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = node.get("/api/v1/routing", StudyInstanceUID=study_uid)
    return found


def test_a_dce_study_comes_back_as_seg_colour_map_and_sr(
    running: NodeProcess, tmp_path: Path
) -> None:
    datasets, phantom = small_study(21)
    study_uid = str(datasets[0].StudyInstanceUID)
    started = time.monotonic()
    store(running, datasets)

    job = running.wait_final(study_uid, timeout=240)
    seconds = time.monotonic() - started
    assert job["state"] == "done", job["last_error"]
    assert job["model_ref"] == "mri-kinetics/0.1.0"
    result = job["result"]
    assert result["model"] == "mri-kinetics/0.1.0" and result["images"] == []
    lesions = result["mri"]["lesions"]
    assert sorted(lesion["curve"] for lesion in lesions) == sorted(
        lesion.curve for lesion in phantom.lesions
    )
    assert result["mri"]["phases"] == 6 and result["mri"]["slices"] == 12
    kinds = [output["kind"] for output in result["outputs"]]
    maps = kinds.count("kinetic_map")
    assert kinds[:2] == ["seg", "tid1500"] and maps >= 1
    assert kinds[2 + maps :] == ["summary_sc", "summary_pdf"]  # in the node's language
    print(f"\nDCE exam (6 phases x 12 slices x 64 x 96) sent to done: {seconds:.1f} s")

    client = OrthancClient(running.settings)

    def all_in_orthanc() -> dict[str, list[dict[str, Any]]] | None:
        found = client.outputs(study_uid)
        return found if sum(len(v) for v in found.values()) == len(kinds) else None

    outputs = wait_for("SEG, SR and colour map in Orthanc", all_in_orthanc, timeout=60)
    assert {"SEG", "SR"} <= set(outputs)
    written = {output["SOPInstanceUID"] for output in result["outputs"]}
    sources = {str(ds.SOPInstanceUID) for ds in datasets}
    classes = []
    for instances in outputs.values():
        for instance in instances:
            data = client.instance_file(instance["ID"])
            path = tmp_path / f"{instance['ID']}.dcm"
            path.write_bytes(data)
            assert dciodvfy_errors(path) == [], f"{path.name} has dciodvfy errors"
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.StudyInstanceUID == study_uid and ds.SOPInstanceUID in written
            classes.append(ds.SOPClassUID)
            algorithm = [
                item
                for item in ds.ContributingEquipmentSequence
                if item.get("DeviceUID") == KINETIC_CAD.device_uid
            ]
            assert len(algorithm) == 1 and algorithm[0].SoftwareVersions == "0.1.0"
            if ds.SOPClassUID == COMPREHENSIVE_SR:
                assert "Imaging Measurement Report" in dsrdump(path)
            if ds.SOPClassUID == SEGMENTATION:
                referenced = {
                    item.ReferencedSOPInstanceUID
                    for series in ds.ReferencedSeriesSequence
                    for item in series.ReferencedInstanceSequence
                }
                assert referenced and referenced <= sources
    assert classes.count(SEGMENTATION) == 1 and classes.count(COMPREHENSIVE_SR) == 1
    # The colour map (one RGB Secondary Capture per slice) and the summary SC, and its PDF.
    assert classes.count(ENCAPSULATED_PDF) == 1 and len(classes) - 3 == maps + 1

    recorded = decisions(running, study_uid)
    ignored = sorted(str(d["reason"]) for d in recorded if d["decision"] == "ignored")
    assert len(ignored) == 2 and "T2-weighted" in ignored[0] and "subtraction" in ignored[1]
    history = running.get(f"/api/v1/jobs/{job['id']}")["history"]
    assert [h["to_state"] for h in history][-5:] == [
        "fetching",
        "inferring",
        "writing",
        "publishing",
        "done",
    ]
    # The node never routes its own outputs: still one job for the study.
    time.sleep(running.settings.stable_age + 2 * running.settings.reconcile_seconds)
    assert len(running.jobs(study_uid)) == 1


def test_an_incomplete_or_non_dce_study_gets_a_clear_outcome(running: NodeProcess) -> None:
    datasets, _ = small_study(22)
    two_phases = [ds for ds in datasets if ds.SeriesDescription in ("ax DCE pre", "ax DCE post 1")]
    incomplete_uid = str(datasets[0].StudyInstanceUID)
    store(running, two_phases)

    t2_only = [ds for ds in small_study(23)[0] if ds.SeriesDescription == "ax T2 TSE"]
    t2_uid = str(t2_only[0].StudyInstanceUID)
    store(running, t2_only)

    job = running.wait_final(incomplete_uid, timeout=120)
    assert job["state"] == "failed" and job["attempts"] == 1  # final: retrying cannot help
    assert "2 DCE phase(s) found, at least 3 needed" in job["last_error"]

    t2 = wait_for("the T2 series' decision", lambda: decisions(running, t2_uid), timeout=30)
    assert t2[0]["decision"] == "ignored" and "T2-weighted" in str(t2[0]["reason"])
    assert running.jobs(t2_uid) == []


def test_an_enhanced_mr_study_comes_back_with_frame_references(
    running: NodeProcess, tmp_path: Path
) -> None:
    """The DCE phases as one Enhanced MR object (72 frames): routed, assembled frame by frame,
    and every output valid and pointing at the source frames."""
    phantom = make_dce_phantom(seed=24, slices=12, rows=64, columns=96)
    datasets, _ = dce_study(24, phantom, enhanced=True, single_object=True)
    enhanced = [ds for ds in datasets if ds.SOPClassUID == ENHANCED_MR_IMAGE_STORAGE]
    assert len(enhanced) == 1 and int(enhanced[0].NumberOfFrames) == 72
    study_uid = str(datasets[0].StudyInstanceUID)
    store(running, datasets)

    job = running.wait_final(study_uid, timeout=240)
    assert job["state"] == "done", job["last_error"]
    result = job["result"]
    assert sorted(lesion["curve"] for lesion in result["mri"]["lesions"]) == sorted(
        lesion.curve for lesion in phantom.lesions
    )
    assert result["mri"]["phases"] == 6 and result["mri"]["slices"] == 12
    client = OrthancClient(running.settings)
    count = len(result["outputs"])

    def all_in_orthanc() -> dict[str, list[dict[str, Any]]] | None:
        found = client.outputs(study_uid)
        return found if sum(len(v) for v in found.values()) == count else None

    outputs = wait_for("the Enhanced MR study's outputs in Orthanc", all_in_orthanc, timeout=60)
    source = str(enhanced[0].SOPInstanceUID)
    framed = 0
    for instances in outputs.values():
        for instance in instances:
            data = client.instance_file(instance["ID"])
            path = tmp_path / f"{instance['ID']}.dcm"
            path.write_bytes(data)
            assert dciodvfy_errors(path) == [], f"{path.name} has dciodvfy errors"
            ds = pydicom.dcmread(io.BytesIO(data))
            if ds.SOPClassUID == SEGMENTATION:
                items = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
                frames = {int(i.ReferencedFrameNumber) for i in items.SourceImageSequence}
                assert len(frames) == 6 and {
                    i.ReferencedSOPInstanceUID for i in items.SourceImageSequence
                } == {source}
                framed += 1
            elif "SourceImageSequence" in ds:
                reference = ds.SourceImageSequence[0]
                assert reference.ReferencedSOPInstanceUID == source
                assert 13 <= int(reference.ReferencedFrameNumber) <= 24  # first post-contrast
                framed += 1
    assert framed == count - 2  # all but the SR and the PDF, which name instances
