"""The spine, end to end, with real parts: Orthanc + plugin, C-STORE, the node process,
STOW-RS back into Orthanc, and dciodvfy / dsrdump on every object the node wrote."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from node.errors import PeerUnavailable
from node.models.registry import device_uid
from node.net.dimse import Peer, send
from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam
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


class Running:
    def __init__(self, orthanc: EmbeddedOrthanc, node: NodeProcess) -> None:
        self.orthanc = orthanc
        self.node = node
        self.settings = node.settings
        self.client = OrthancClient(node.settings)

    def send(self, datasets: list[pydicom.Dataset], calling_aet: str = "MODALITY1") -> None:
        outcome = send(
            Peer("127.0.0.1", self.settings.dicom_port, self.settings.aet, calling_aet), datasets
        )
        assert outcome.sent == len(datasets), outcome


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = make_settings(tmp_path_factory.mktemp("node"))
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        yield Running(orthanc, node)
    finally:
        node.stop()
        orthanc.stop()


def exam(seed: int, **kwargs: object) -> list[pydicom.Dataset]:
    return [ds for ds, _truth in synthetic_exam(seed, **kwargs)]  # type: ignore[arg-type]


def test_exam_comes_back_as_valid_seg_and_sr(running: Running, tmp_path: Path) -> None:
    datasets = exam(seed=101)
    study_uid = str(datasets[0].StudyInstanceUID)
    running.send(datasets)

    job = running.node.wait_final(study_uid)
    assert job["state"] == "done", job["last_error"]
    assert len(job["result"]["images"]) == 4
    assert 0.0 <= job["result"]["score"] <= 1.0

    outputs = wait_for(
        "SR and SEG in Orthanc",
        lambda: (o := running.client.outputs(study_uid)) and "SR" in o and "SEG" in o and o,
        timeout=30,
    )
    sources = {str(ds.SOPInstanceUID) for ds in datasets}
    for modality, instances in outputs.items():
        for instance in instances:
            data = running.client.instance_file(instance["ID"])
            path = tmp_path / f"{instance['ID']}.dcm"
            path.write_bytes(data)
            assert dciodvfy_errors(path) == [], f"{modality} has dciodvfy errors"
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.StudyInstanceUID == study_uid
            # IHE AIR provenance: the model version as Contributing Equipment.
            model_id, version = job["result"]["model"].split("/")
            algorithm = [
                item
                for item in ds.ContributingEquipmentSequence
                if item.get("DeviceUID") == device_uid(model_id, version)
            ]
            assert len(algorithm) == 1 and algorithm[0].SoftwareVersions == version
            assert algorithm[0].ManufacturerModelName
            if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33":  # the TID 1500 SR
                dump = dsrdump(path)
                assert "Imaging Measurement Report" in dump
            if modality == "SEG":
                referenced = {
                    item.ReferencedSOPInstanceUID
                    for series in ds.ReferencedSeriesSequence
                    for item in series.ReferencedInstanceSequence
                }
                assert referenced <= sources and referenced

    history = running.node.get(f"/api/v1/jobs/{job['id']}")["history"]
    assert [h["to_state"] for h in history] == [
        "received",
        "queued",
        "fetching",
        "inferring",
        "writing",
        "publishing",
        "done",
    ]


def test_resent_exam_adds_no_results(running: Running) -> None:
    datasets = exam(seed=102)
    study_uid = str(datasets[0].StudyInstanceUID)
    running.send(datasets)
    assert running.node.wait_final(study_uid)["state"] == "done"
    before = sorted(i["ID"] for i in running.client.study_instances(study_uid))

    running.send(exam(seed=102))  # the modality sends the same exam again
    # Let the study become stable again and the reconciler run a few times.
    time.sleep(running.settings.stable_age + 3 * running.settings.reconcile_seconds)
    after = sorted(i["ID"] for i in running.client.study_instances(study_uid))
    assert after == before
    assert len(running.node.jobs(study_uid)) == 1


def test_bad_inputs_get_a_recorded_outcome_and_the_node_goes_on(running: Running) -> None:
    # A CT image, a For Processing mammogram and a mammogram with truncated pixel data.
    good = exam(seed=103)
    study_uid = str(good[0].StudyInstanceUID)

    for_processing = exam(seed=104, for_processing=True)[0]
    fp_study = str(for_processing.StudyInstanceUID)

    ct = exam(seed=105)[0].copy()
    ct.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ct.Modality = "CT"
    ct.SOPInstanceUID = generate_uid()
    ct_study = str(ct.StudyInstanceUID)

    corrupt = exam(seed=106)[0]
    corrupt.PixelData = corrupt.PixelData[: len(corrupt.PixelData) // 3]  # cut short
    corrupt_study = str(corrupt.StudyInstanceUID)
    corrupt.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    running.send([for_processing, ct])
    running.send([corrupt])

    corrupt_job = running.node.wait_final(corrupt_study)
    assert corrupt_job["state"] == "failed"
    assert "no usable image" in corrupt_job["last_error"]

    def decision(study: str) -> list[dict[str, object]]:
        return running.node.get("/api/v1/routing", StudyInstanceUID=study)  # type: ignore[no-any-return]

    fp = wait_for("the For Processing decision", lambda: decision(fp_study), timeout=30)
    assert fp[0]["decision"] == "ignored" and "FOR PROCESSING" in fp[0]["reason"]
    ct_decision = wait_for("the CT decision", lambda: decision(ct_study), timeout=30)
    assert ct_decision[0]["decision"] == "ignored" and "Modality CT" in ct_decision[0]["reason"]
    assert running.node.jobs(fp_study) == [] and running.node.jobs(ct_study) == []

    running.send(good)  # the node still works
    assert running.node.wait_final(study_uid)["state"] == "done"


def test_unknown_calling_ae_title_is_refused(running: Running) -> None:
    with pytest.raises(PeerUnavailable, match="calling AE STRANGER"):
        send(
            Peer("127.0.0.1", running.settings.dicom_port, running.settings.aet, "STRANGER"),
            exam(seed=107),
        )


def test_results_arrive_when_the_node_starts_after_the_images(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        datasets = exam(seed=108)
        outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        assert outcome.sent == 4
        client = OrthancClient(settings)
        wait_for("the study to become stable in Orthanc", client.has_stable_study, timeout=30)
        node.start()  # the plugin's push was lost: the node reconciles from /changes
        job = node.wait_final(str(datasets[0].StudyInstanceUID))
        assert job["state"] == "done"
        assert set(client.outputs(str(datasets[0].StudyInstanceUID))) >= {"SR", "SEG"}
    finally:
        node.stop()
        orthanc.stop()


def test_worker_killed_mid_job_still_gives_exactly_one_result_set(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, lease_seconds=3.0)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        # Full-size images (3328 x 2560) keep the job busy long enough to be killed mid-way.
        datasets = exam(seed=109, rows=3328, columns=2560)
        study_uid = str(datasets[0].StudyInstanceUID)
        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)

        def working() -> bool:
            jobs = node.jobs(study_uid)
            return bool(jobs) and jobs[0]["state"] in ("fetching", "inferring", "writing")

        wait_for("the job to be in progress", working, timeout=60, every=0.05)
        node.kill()

        node.start()
        job = node.wait_final(study_uid, timeout=180)
        assert job["state"] == "done", job["last_error"]
        history = node.get(f"/api/v1/jobs/{job['id']}")["history"]
        assert any("expired" in (h["reason"] or "") for h in history)
        outputs = OrthancClient(settings).outputs(study_uid)
        # Exactly one result set: as many SR / SEG instances as the job wrote (the default
        # destination receives every output kind).
        written = [o["Modality"] for o in job["result"]["outputs"]]
        assert len(outputs["SR"]) == written.count("SR") >= 1
        assert len(outputs["SEG"]) == written.count("SEG")
        assert len(np.unique([i["ID"] for i in outputs["SEG"]])) == len(outputs["SEG"])
    finally:
        node.stop()
        orthanc.stop()
