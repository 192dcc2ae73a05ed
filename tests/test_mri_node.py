"""Breast DCE-MRI through the node, fast: routing, intake and the pipeline's MR branch with
the real kinetic CAD on a small synthetic DCE study, a real job store on SQLite, an
in-memory DICOMweb source and destination (tests/test_mri_end_to_end.py runs it through a
real Orthanc)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from node.config import ENHANCED_MR_IMAGE_STORAGE, RoutingRules
from node.delivery.service import Deliveries
from node.domain import ExamRequest, ExamSummary, InstanceRef
from node.events import EventBus
from node.ingest.intake import ExamIntake
from node.ingest.routing import route
from node.jobs.mri_stages import MRI_MODEL_REF
from node.jobs.pipeline import ExamPipeline
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.jobs.worker import Worker, WorkerOptions
from node.mri.outputs import build_kinetic_outputs
from node.mri.phantom import DcePhantom, make_dce_phantom
from node.mri.synthetic_dicom import dce_study
from node.net.orthanc_rest import InstanceTags
from tests.memory import (
    Clock,
    MemoryDicomWeb,
    MemoryModel,
    MemoryOrthanc,
    MemoryPublisher,
    job_store,
    simplified_tags,
    small_exam,
)

RULES = RoutingRules()
OPTIONS = WorkerOptions(
    lease_seconds=60.0, backoff_seconds=1.0, backoff_max_seconds=1.0, poll_seconds=0.01
)


@pytest.fixture(scope="module")
def study() -> tuple[list[pydicom.Dataset], DcePhantom]:
    """T2, six DCE phases and a subtraction series, 12 slices of 64 x 96."""
    return dce_study(3, make_dce_phantom(seed=3, slices=12, rows=64, columns=96))


def tags_of(ds: pydicom.Dataset) -> InstanceTags:
    return InstanceTags(
        orthanc_id=str(ds.SOPInstanceUID),
        SOPInstanceUID=str(ds.SOPInstanceUID),
        SOPClassUID=str(ds.SOPClassUID),
        SeriesInstanceUID=str(ds.SeriesInstanceUID),
        StudyInstanceUID=str(ds.StudyInstanceUID),
        Modality=str(ds.Modality),
        PresentationIntentType="",
        Manufacturer=str(ds.get("Manufacturer", "")),
        header=simplified_tags(ds),
    )


def first_of(datasets: list[pydicom.Dataset], description: str) -> pydicom.Dataset:
    return next(ds for ds in datasets if ds.SeriesDescription == description)


def dce_only(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    return [ds for ds in datasets if ds.SeriesDescription.startswith("ax DCE p")]


class TestRouting:
    def test_a_dce_phase_is_routed(self, study: tuple[list[pydicom.Dataset], DcePhantom]) -> None:
        decision = route(tags_of(first_of(study[0], "ax DCE post 1")), RULES)
        assert decision.routed and "dynamic contrast-enhanced" in decision.reason

    @pytest.mark.parametrize(
        ("description", "why"),
        [("ax T2 TSE", "T2-weighted"), ("ax DCE SUB post 1", "subtraction")],
    )
    def test_t2_and_subtraction_series_are_ignored_with_the_reason(
        self, study: tuple[list[pydicom.Dataset], DcePhantom], description: str, why: str
    ) -> None:
        decision = route(tags_of(first_of(study[0], description)), RULES)
        assert (decision.routed, decision.code) == (False, "not_dce") and why in decision.reason

    def test_diffusion_is_ignored(self, study: tuple[list[pydicom.Dataset], DcePhantom]) -> None:
        ds = copy.deepcopy(first_of(study[0], "ax DCE post 1"))
        ds.DiffusionBValue = 800.0
        decision = route(tags_of(ds), RULES)
        assert decision.code == "not_dce" and "diffusion" in decision.reason

    def test_an_mr_of_another_body_part_is_ignored(
        self, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        ds = copy.deepcopy(first_of(study[0], "ax DCE post 1"))
        ds.BodyPartExamined = "HEAD"
        decision = route(tags_of(ds), RULES)
        assert decision.code == "body_part" and "HEAD" in decision.reason

    def test_without_body_part_the_descriptions_must_name_the_breast(
        self, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        ds = copy.deepcopy(first_of(study[0], "ax DCE post 1"))
        del ds.BodyPartExamined
        assert route(tags_of(ds), RULES).routed  # "Breast MRI DCE" in Study Description
        ds.StudyDescription = "MRI DCE"
        decision = route(tags_of(ds), RULES)
        assert decision.code == "body_part" and not decision.routed

    def test_other_mr_sop_classes_and_mr_routing_turned_off(
        self, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        tags = tags_of(first_of(study[0], "ax DCE post 1"))
        other = route(replace(tags, SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), RULES)
        assert other.code == "sop_class" and "for MR" in other.reason
        off = route(tags, replace(RULES, mr_sop_classes=()))
        assert off.code == "modality" and "Modality MR" in off.reason

    def test_enhanced_mr_dce_is_routed(self) -> None:
        phantom = make_dce_phantom(seed=3, slices=8, rows=48, columns=64)
        datasets, _ = dce_study(3, phantom, enhanced=True, single_object=True)
        enhanced = [ds for ds in datasets if ds.SOPClassUID == ENHANCED_MR_IMAGE_STORAGE]
        assert len(enhanced) == 1 and route(tags_of(enhanced[0]), RULES).code == "routed"
        only = replace(RULES, mr_sop_classes=(str(first_of(datasets, "ax T2 TSE").SOPClassUID),))
        decision = route(tags_of(enhanced[0]), only)
        assert decision.code == "sop_class" and not decision.routed
        t2 = copy.deepcopy(enhanced[0])
        t2.PulseSequenceName = "tse3d"  # Enhanced MR names its sequence in this attribute
        decision = route(tags_of(t2), RULES)
        assert decision.code == "not_dce" and "turbo spin echo" in decision.reason


class TestIntake:
    def intake(self, folder: Path) -> tuple[ExamIntake, MemoryOrthanc, JobStore]:
        clock = Clock()
        store = job_store(folder, clock)
        orthanc = MemoryOrthanc()
        intake = ExamIntake(
            orthanc, store, EventBus(), RULES, model_ref="demo/1.0.0", max_attempts=3, clock=clock
        )
        return intake, orthanc, store

    def test_a_dce_study_is_one_mr_job_of_its_dce_series(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        intake, orthanc, store = self.intake(tmp_path)
        datasets = study[0]
        orthanc.store("mr-1", datasets)
        job = intake.stable_study("mr-1")
        assert job is not None and job.state is JobState.QUEUED
        assert job.model_ref == MRI_MODEL_REF == "mri-kinetics/0.1.0"
        request = ExamRequest.from_json(job.payload)
        assert request.modality == "MR" and request.views == () and request.missing_views == ()
        assert {ref.SOPInstanceUID for ref in request.instances} == {
            str(ds.SOPInstanceUID) for ds in dce_only(datasets)
        }
        decisions = store.routing_decisions(job.study_instance_uid)
        ignored = sorted(d["reason"] for d in decisions if d["decision"] == "ignored")
        assert len(ignored) == 2 and "subtraction" in ignored[1] and "T2" in ignored[0]
        assert sum(d["instances"] for d in decisions if d["decision"] == "routed") == 6 * 12
        assert intake.stable_study("mr-1") == job  # stable again: the same job
        store.engine.dispose()

    def test_a_study_of_mammograms_and_mri_gets_a_job_of_each(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        intake, orthanc, store = self.intake(tmp_path)
        mammograms = small_exam(seed=72)
        for ds in mammograms:
            ds.StudyInstanceUID = study[0][0].StudyInstanceUID
        orthanc.store("both", [*mammograms, *study[0]])
        job = intake.stable_study("both")
        assert job is not None and job.model_ref == "demo/1.0.0"
        refs = sorted(j.model_ref for j in store.list_jobs())
        assert refs == ["demo/1.0.0", MRI_MODEL_REF]
        store.engine.dispose()

    def test_a_study_of_t2_only_makes_no_job(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        intake, orthanc, store = self.intake(tmp_path)
        orthanc.store("t2", [ds for ds in study[0] if ds.SeriesDescription == "ax T2 TSE"])
        assert intake.stable_study("t2") is None
        assert [d["decision"] for d in store.routing_decisions()] == ["ignored"]
        store.engine.dispose()


class Harness:
    """The pipeline and a worker on real parts except the two peers."""

    def __init__(self, folder: Path, datasets: list[pydicom.Dataset], *outputs: str) -> None:
        self.store: JobStore = job_store(folder, Clock())
        self.destination = MemoryPublisher(outputs=outputs)
        deliveries = Deliveries(self.store.engine, [self.destination], folder / "outbox")
        self.pipeline = ExamPipeline(
            MemoryModel(), MemoryDicomWeb(datasets), deliveries, store=self.store, bus=EventBus()
        )
        self.worker = Worker(self.store, self.pipeline, EventBus(), OPTIONS, worker_id="w1")

    def run(self, datasets: list[pydicom.Dataset], revision: int = 0) -> Job:
        study = str(datasets[0].StudyInstanceUID)
        refs = tuple(
            InstanceRef(study, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in datasets
        )
        self.store.create_job(
            idempotency_key=f"{study}-{len(refs)}-{revision}",
            study_instance_uid=study,
            model_ref=MRI_MODEL_REF,
            payload=ExamRequest("mr", refs, revision=revision, modality="MR").to_json(),
            max_attempts=3,
        )
        done = self.worker.run_once()
        assert done is not None
        return done


class TestPipeline:
    def test_a_dce_exam_gets_its_lesions_and_every_mr_output(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        datasets, phantom = study
        harness = Harness(tmp_path, datasets, "all")
        job = harness.run(dce_only(datasets))
        assert job.state is JobState.DONE, job.last_error
        assert job.result is not None
        result = ExamSummary.from_json(job.result)
        assert result.model == MRI_MODEL_REF and result.images == ()
        assert result.mri is not None
        assert (result.mri.phases, result.mri.slices) == (6, 12)
        assert sorted(lesion.curve for lesion in result.mri.lesions) == sorted(
            lesion.curve for lesion in phantom.lesions
        )
        assert result.score == max(lesion.score for lesion in result.mri.lesions)
        assert result.recall  # the washout candidate scores above the operating point
        assert result.breasts["L"] is not None and result.breasts["R"] is not None
        kinds = [output.kind for output in result.outputs]
        assert kinds[:2] == ["seg", "tid1500"]
        assert set(kinds[2:]) == {"kinetic_map", "summary_sc", "summary_pdf"}
        sent = harness.destination.sent
        assert sorted(str(ds.SOPInstanceUID) for ds in sent) == sorted(
            o.SOPInstanceUID for o in result.outputs
        )
        assert result.published == {"pacs": len(result.outputs)}
        for ds in sent:
            assert ds.StudyInstanceUID == datasets[0].StudyInstanceUID
            assert ds.Manufacturer == "mammo-node"
        harness.store.engine.dispose()

    def test_a_destination_gets_only_the_kinds_it_chose(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        harness = Harness(tmp_path, study[0], "tid1500")
        job = harness.run(dce_only(study[0]))
        assert job.state is JobState.DONE, job.last_error
        assert [ds.Modality for ds in harness.destination.sent] == ["SR"]
        harness.store.engine.dispose()

    def test_a_revision_has_new_uids_and_its_sr_names_the_one_it_replaces(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        harness = Harness(tmp_path, study[0], "all")
        first = harness.run(dce_only(study[0]))
        second = harness.run(dce_only(study[0]), revision=1)
        assert first.result is not None and second.result is not None
        before = ExamSummary.from_json(first.result).outputs
        after = ExamSummary.from_json(second.result).outputs
        assert not {o.SOPInstanceUID for o in before} & {o.SOPInstanceUID for o in after}
        old_sr = next(o for o in before if o.kind == "tid1500")
        new_sr = next(ds for ds in harness.destination.sent[len(before) :] if ds.Modality == "SR")
        predecessor = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
        assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
            old_sr.SOPInstanceUID
        )
        harness.store.engine.dispose()

    def test_a_study_with_too_few_phases_fails_for_good_with_the_reason(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        two = [
            ds
            for ds in study[0]
            if ds.SeriesDescription in ("ax DCE pre", "ax DCE post 1", "ax T2 TSE")
        ]
        harness = Harness(tmp_path, two, "all")
        job = harness.run(two)
        assert job.state is JobState.FAILED and job.attempts == 1
        assert "InvalidInput" in (job.last_error or "")
        assert "2 DCE phase(s) found, at least 3 needed" in (job.last_error or "")
        assert harness.destination.sent == []
        harness.store.engine.dispose()

    def test_mismatched_phase_geometry_fails_with_the_reason(
        self, tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
    ) -> None:
        datasets = [copy.deepcopy(ds) for ds in dce_only(study[0])]
        dropped = next(ds for ds in datasets if ds.SeriesDescription == "ax DCE post 3")
        datasets.remove(dropped)  # one phase a slice short
        harness = Harness(tmp_path, datasets, "all")
        job = harness.run(datasets)
        assert job.state is JobState.FAILED
        assert "phases must share one geometry" in (job.last_error or "")
        harness.store.engine.dispose()


def test_each_kind_is_built_on_its_own_and_a_failure_is_recorded(
    study: tuple[list[pydicom.Dataset], DcePhantom],
) -> None:
    from node.mri import analyse, assemble_dce

    exam = assemble_dce(study[0])
    result = analyse(exam)
    only_map = build_kinetic_outputs(exam, result, ["kinetic_map"])
    assert {o.kind for o in only_map} == {"kinetic_map"} and not only_map.failures
    with_sr = build_kinetic_outputs(exam, result, ["tid1500", "gsps"])  # gsps: MG only
    assert [o.kind for o in with_sr] == ["seg", "tid1500"]  # the SR needs its SEG
    # A measurement DICOM cannot encode (NaN) fails the SR alone, with the reason.
    result.candidates[0] = replace(result.candidates[0], volume_mm3=float("nan"))
    partial = build_kinetic_outputs(exam, result)
    assert set(partial.failures) == {"tid1500"} and "non-finite" in partial.failures["tid1500"]
    assert {o.kind for o in partial} == {"seg", "kinetic_map", "summary_sc", "summary_pdf"}
    # Maps of another size than the source images fail every kind: then it is an error.
    result.labels = result.labels[:-1]
    with pytest.raises(ValueError, match="no MR output could be built"):
        build_kinetic_outputs(exam, result, ["seg", "tid1500", "kinetic_map"])


def test_a_second_study_uid_in_the_job_is_refused(
    tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
) -> None:
    datasets = [copy.deepcopy(ds) for ds in dce_only(study[0])]
    datasets[0].StudyInstanceUID = generate_uid()
    harness = Harness(tmp_path, datasets, "all")
    job = harness.run(datasets)
    assert job.state is JobState.FAILED and "2 studies" in (job.last_error or "")
    harness.store.engine.dispose()


def test_the_console_and_api_show_an_mr_jobs_lesions(
    tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
) -> None:
    """A real Node (no Orthanc: the DCE study is fetched from memory, the delivery to the
    absent Orthanc waits for its retry) and its console page of the MR job."""
    from fastapi.testclient import TestClient

    from node.api.app import create_api
    from node.config import ConsoleUser
    from node.runtime.node import Node
    from tests.harness import make_settings

    users = (ConsoleUser("vera", "viewer-secret", "viewer"),)
    node = Node(make_settings(tmp_path / "data", workers=0, console_users=users))
    datasets = dce_only(study[0])
    node.pipeline.source = MemoryDicomWeb(datasets)
    study_uid = str(datasets[0].StudyInstanceUID)
    refs = tuple(
        InstanceRef(study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in datasets
    )
    node.store.create_job(
        idempotency_key="mr-console",
        study_instance_uid=study_uid,
        model_ref=MRI_MODEL_REF,
        payload=ExamRequest("mr", refs, modality="MR").to_json(),
        max_attempts=3,
    )
    job = Worker(node.store, node.pipeline, node.bus, OPTIONS, worker_id="w1").run_once()
    assert job is not None and job.state is JobState.DONE, job and job.last_error
    with TestClient(create_api(node), base_url="http://127.0.0.1:8000") as client:
        page = client.get(f"/jobs/{job.id}", auth=("vera", "viewer-secret"))
        assert page.status_code == 200
        assert page.text.count("washout") == 1 and "Breast MRI kinetics" in page.text
        assert "subtraction" not in page.text  # only the DCE series were routed to the job
        api = client.get(f"/api/v1/jobs/{job.id}", headers={"Authorization": "Bearer test-token"})
        lesions = api.json()["result"]["mri"]["lesions"]
        assert sorted(lesion["curve"] for lesion in lesions) == ["persistent", "plateau", "washout"]
        assert api.json()["model_ref"] == "mri-kinetics/0.1.0"
    node.store.engine.dispose()


def test_the_rule_tester_routes_mr_files_as_the_node_does(
    tmp_path: Path, study: tuple[list[pydicom.Dataset], DcePhantom]
) -> None:
    from node.ingest.rule_tester import try_files

    for description in ("ax T2 TSE", "ax DCE post 2", "ax DCE SUB post 1"):
        first_of(study[0], description).save_as(
            tmp_path / f"{description}.dcm", enforce_file_format=True
        )
    trials = {Path(t.source).stem: t.decision for t in try_files([tmp_path], RULES)}
    assert trials["ax DCE post 2"].routed
    assert trials["ax T2 TSE"].code == trials["ax DCE SUB post 1"].code == "not_dce"
