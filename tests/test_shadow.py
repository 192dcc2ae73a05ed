"""Shadow mode with real parts: a node built from real model folders and a real SQLite store,
the pipeline's own inference stage, and the API through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from node.api.app import create_api
from node.config import PromotionMargins
from node.db import create_engine
from node.domain import ExamRequest, ExamResult, InstanceRef
from node.events import ExamScored
from node.jobs.pipeline import ExamWork
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.models.lifecycle import ModelLifecycle
from node.review.shadow import ShadowResult, ShadowRunner, ShadowStore, shadow_runner_for
from node.runtime.node import Node
from node.synthetic.dicom import synthetic_exam
from tests.harness import make_settings
from tests.test_lifecycle import add_model, locked

LIVE, SHADOW = "demo/1.0.0", "demo/1.1.0"
TOKEN = {"Authorization": "Bearer test-token"}


def small_exam(seed: int, lesions: int = 1) -> list[pydicom.Dataset]:
    exam = synthetic_exam(seed, rows=256, columns=208, lesions_per_image=lesions)
    return [dataset for dataset, _truth in exam]


def _engine(tmp: Path) -> Engine:
    """A real job database (the shadow table refers to the jobs table)."""
    engine = create_engine(f"sqlite:///{tmp / 'jobs.sqlite'}")
    JobStore(engine)
    return engine


def set_operating_point(folder: Path, value: float) -> None:
    raw = yaml.safe_load((folder / "model.yaml").read_text())
    raw["operating_point"] = value
    (folder / "model.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def build_node(tmp: Path, *, shadow: str | None) -> Node:
    models = tmp / "models"
    add_model(models, LIVE, **locked(0.80, 0.80))
    # Same weights, an operating point that recalls nearly everything: disagreement shows.
    set_operating_point(add_model(models, SHADOW, **locked(0.81, 0.80)), 0.01)
    lifecycle = ModelLifecycle(models)
    lifecycle.promote(LIVE, margins=PromotionMargins())
    if shadow:
        lifecycle.set_shadow(shadow)
    return Node(make_settings(tmp / "data", models_dir=models, workers=0))


def run_inference(node: Node, datasets: list[pydicom.Dataset]) -> tuple[Job, ExamWork]:
    """A real job through the pipeline's inference stage, then recorded as done."""
    study = str(datasets[0].StudyInstanceUID)
    instances = tuple(
        InstanceRef(study, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in datasets
    )
    job, _ = node.store.create_job(
        idempotency_key=f"test-{study}",
        study_instance_uid=study,
        model_ref=LIVE,
        payload=ExamRequest(f"orthanc-{study}", instances).to_json(),
        max_attempts=3,
    )
    leased = node.store.lease("test-worker", 30)
    assert leased is not None and leased.id == job.id
    job = node.store.advance(leased, JobState.INFERRING, worker="test-worker", lease_seconds=30)
    work = ExamWork(job, sources=list(datasets))
    node.pipeline.infer(work)
    for state in (JobState.WRITING, JobState.PUBLISHING, JobState.DONE):
        job = node.store.advance(
            job,
            state,
            worker="test-worker",
            lease_seconds=30,
            result=work.summary().to_json() if state is JobState.DONE else None,
        )
    return job, work


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return build_node(tmp_path_factory.mktemp("shadow"), shadow=SHADOW)


@pytest.fixture(scope="module")
def client(node: Node) -> Iterator[TestClient]:
    with TestClient(create_api(node)) as test_client:
        yield test_client


class TestShadowRun:
    def test_the_node_runs_the_registry_shadow_beside_the_live_model(self, node: Node) -> None:
        assert node.running_models == {"live": LIVE, "shadow": SHADOW}

    def test_each_job_stores_the_shadow_verdict_and_publishes_only_live(self, node: Node) -> None:
        job, work = run_inference(node, small_exam(seed=31, lesions=0))
        assert work.exam is not None and work.outputs == []
        # Every result names the model version that produced it.
        assert job.result is not None and job.result["model"] == LIVE
        (stored,) = node.shadow_results.for_job(job.id)
        assert (stored.live_model, stored.shadow_model) == (LIVE, SHADOW)
        assert stored.live_score == round(work.exam.score, 4) == job.result["score"]
        assert stored.live_recall is work.exam.recall
        # Same weights, so the same score; only the operating point differs.
        assert stored.shadow_score == stored.live_score
        assert stored.shadow_recall is (stored.shadow_score >= 0.01)
        assert stored.agree is (stored.live_recall == stored.shadow_recall)
        assert stored.images == 4

    def test_a_retried_job_replaces_its_shadow_row(self, node: Node) -> None:
        store = node.shadow_results
        row = ShadowResult(1, LIVE, SHADOW, 0.2, False, 0.2, True, False, 4, 0.1)
        store.record(row)
        store.record(row)
        assert len(store.for_job(1)) == 1

    def test_a_shadow_failure_never_fails_the_job(
        self, node: Node, caplog: pytest.LogCaptureFixture
    ) -> None:
        runner = node.shadow
        assert runner is not None
        job = node.store.list_jobs(limit=1)[0]
        before = node.shadow_results.agreement()
        live = ExamResult(job.study_instance_uid, node.model.spec, images=[])
        assert runner.run(ExamScored(job.id, (), live)) is None  # no image to score
        assert "shadow model failed" in caplog.text
        assert node.shadow_results.agreement() == before


class TestShadowReport:
    def test_models_endpoint_reports_agreement_per_model_pair(
        self, node: Node, client: TestClient
    ) -> None:
        run_inference(node, small_exam(seed=32, lesions=1))
        body = client.get("/api/v1/models", headers=TOKEN).json()
        assert body["running"] == {"live": LIVE, "shadow": SHADOW}
        assert (body["live"], body["shadow"]) == (LIVE, SHADOW)
        flags = {m["ref"]: (m["live"], m["shadow"]) for m in body["models"]}
        assert flags == {LIVE: (True, False), SHADOW: (False, True)}
        summary = {m["ref"]: m["evaluation_summary"] for m in body["models"]}
        assert summary[LIVE] == "locked-v1: AUC 0.800, sens 0.800"
        pairs = {(p["live_model"], p["shadow_model"]): p for p in body["shadow_agreement"]}
        expected = node.shadow_results.agreement()
        assert [(a.live_model, a.shadow_model) for a in expected] == list(pairs)
        pair = pairs[(LIVE, SHADOW)]
        assert pair["jobs"] == expected[0].jobs >= 2
        assert pair["ratio"] == round(expected[0].agreeing / expected[0].jobs, 4)
        assert [h["action"] for h in body["history"]] == ["promote", "shadow"]

    def test_agreement_is_a_metric(self, node: Node, client: TestClient) -> None:
        (pair,) = node.shadow_results.agreement()
        text = client.get("/metrics").text
        label = f'{{live_model="{LIVE}",shadow_model="{SHADOW}"}}'
        assert f"mammo_node_shadow_agreement_ratio{label} {pair.ratio}" in text
        assert f"mammo_node_shadow_jobs{label} {float(pair.jobs)}" in text

    def test_models_endpoint_needs_authentication(self, client: TestClient) -> None:
        assert client.get("/api/v1/models").status_code == 401


class TestShadowStart:
    def test_no_shadow_set_means_none_runs(self, tmp_path: Path) -> None:
        node = build_node(tmp_path, shadow=None)
        assert node.shadow is None
        assert node.running_models == {"live": LIVE, "shadow": None}

    def test_a_broken_shadow_is_left_out_and_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        models = tmp_path / "models"
        add_model(models, LIVE, **locked(0.80, 0.80))
        folder = add_model(models, SHADOW, **locked(0.80, 0.80))
        lifecycle = ModelLifecycle(models)
        lifecycle.promote(LIVE, margins=PromotionMargins())
        lifecycle.set_shadow(SHADOW)
        (folder / "weights.pt").unlink()
        store = ShadowStore(_engine(tmp_path))
        assert shadow_runner_for(models, LIVE, store) is None
        assert "shadow model not started" in caplog.text

    def test_the_shadow_is_skipped_when_it_is_the_running_model(self, tmp_path: Path) -> None:
        models = tmp_path / "models"
        add_model(models, LIVE, **locked(0.80, 0.80))
        add_model(models, SHADOW, **locked(0.80, 0.80))
        lifecycle = ModelLifecycle(models)
        lifecycle.promote(LIVE, margins=PromotionMargins())
        lifecycle.set_shadow(SHADOW)
        # The node's `model` setting overrides the live model with the shadow itself.
        store = ShadowStore(_engine(tmp_path))
        assert shadow_runner_for(models, SHADOW, store) is None
        runner = shadow_runner_for(models, LIVE, store)
        assert isinstance(runner, ShadowRunner) and runner.ref == SHADOW
