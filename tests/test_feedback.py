"""Radiologists' feedback with real parts: a node on real model folders and SQLite, the API
through FastAPI's TestClient, the command line in-process, and the exported label file."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient

from node.api.app import create_api
from node.domain import ExamSummary, ImageSummary
from node.errors import InvalidFeedback
from node.jobs.store import Job
from node.review.feedback import Feedback, finding_locations
from node.runtime.node import Node
from tests.test_lifecycle import run_command
from tests.test_shadow import LIVE, TOKEN, build_node, run_inference, small_exam


class Reviewed:
    def __init__(self, node: Node, client: TestClient, job: Job, exam: list[pydicom.Dataset]):
        self.node = node
        self.client = client
        self.job = job
        self.exam = exam

    def post(self, **body: Any) -> Any:
        return self.client.post("/api/v1/feedback", json=body, headers=TOKEN)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reviewed]:
    node = build_node(tmp_path_factory.mktemp("feedback"), shadow=None)
    exam = small_exam(seed=41, lesions=2)
    job, _work = run_inference(node, exam)
    with TestClient(create_api(node)) as client:
        yield Reviewed(node, client, job, exam)


class TestFeedbackValue:
    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"birads": 7}, "birads must be a BI-RADS category 0-6"),
            ({"birads": True}, "birads must be"),
            ({"pathology": "maybe"}, "pathology must be one of benign, malignant, none"),
            ({"satisfaction": 0}, "satisfaction must be 1-5"),
            ({"finding": -1}, "finding must be 0"),
            ({"job_id": 0}, "job_id must be"),
            ({"agree": "yes"}, "agree must be true or false"),
            ({"comment": "x" * 2001}, "at most 2000 characters"),
        ],
    )
    def test_invalid_values_are_refused_by_name(self, values: dict[str, Any], message: str) -> None:
        with pytest.raises(InvalidFeedback, match=message):
            Feedback(**({"job_id": 1, "agree": True} | values))

    def test_findings_are_numbered_across_the_exam_in_image_order(self) -> None:
        result = ExamSummary(
            model=LIVE,
            score=0.5,
            recall=True,
            breasts={"L": 0.5, "R": 0.2},
            images=(
                ImageSummary("1.1", "R", "CC", score=0.2, findings=1),
                ImageSummary("1.2", "L", "CC", score=0.1, findings=0),
                ImageSummary("1.3", "L", "MLO", score=0.5, findings=2),
            ),
            skipped=(),
            outputs=(),
            published={},
        )
        assert finding_locations(result) == [
            ("1.1", "R CC finding 1"),
            ("1.3", "L MLO finding 1"),
            ("1.3", "L MLO finding 2"),
        ]


class TestFeedbackApi:
    def test_feedback_is_recorded_with_the_job(self, reviewed: Reviewed) -> None:
        response = reviewed.post(
            job_id=reviewed.job.id, agree=True, birads=2, satisfaction=4, comment="fine"
        )
        assert response.status_code == 201, response.text
        stored = reviewed.client.get(
            f"/api/v1/jobs/{reviewed.job.id}/feedback", headers=TOKEN
        ).json()["feedback"]
        assert [(f["finding"], f["agree"], f["birads"], f["satisfaction"]) for f in stored] == [
            (0, True, 2, 4)
        ]

    def test_a_later_verdict_replaces_the_earlier_one(self, reviewed: Reviewed) -> None:
        assert (
            reviewed.post(job_id=reviewed.job.id, agree=False, pathology="benign").status_code
            == 201
        )
        (stored,) = reviewed.node.feedback.for_job(reviewed.job.id)
        assert (stored["agree"], stored["pathology"], stored["birads"]) == (False, "benign", None)

    def test_feedback_on_a_finding(self, reviewed: Reviewed) -> None:
        count = len(finding_locations(ExamSummary.from_json(reviewed.job.result)))
        if count == 0:
            pytest.skip("the model found nothing on this exam")  # pragma: no cover
        response = reviewed.post(
            job_id=reviewed.job.id, agree=True, finding=count, pathology="malignant"
        )
        assert response.status_code == 201, response.text
        too_far = reviewed.post(job_id=reviewed.job.id, agree=True, finding=count + 1)
        assert too_far.status_code == 422
        assert f"finding {count + 1} does not exist" in too_far.json()["detail"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"birads": 9}, "birads"),
            ({"pathology": "maybe"}, "pathology"),
            ({"satisfaction": 6}, "satisfaction"),
            ({"name": "Jane Doe"}, "name"),
            ({"agree": None}, "agree"),
        ],
    )
    def test_invalid_bodies_get_422_naming_the_field(
        self, reviewed: Reviewed, body: dict[str, Any], field: str
    ) -> None:
        response = reviewed.post(**({"job_id": reviewed.job.id, "agree": True} | body))
        assert response.status_code == 422
        assert any(field in error["loc"] for error in response.json()["detail"])

    def test_unknown_and_unfinished_jobs(self, reviewed: Reviewed) -> None:
        assert reviewed.post(job_id=99999, agree=True).status_code == 404
        job, _ = reviewed.node.store.create_job(
            idempotency_key="queued-only",
            study_instance_uid="1.2.3",
            model_ref=LIVE,
            payload={"instances": []},
            max_attempts=1,
        )
        response = reviewed.post(job_id=job.id, agree=True)
        assert response.status_code == 409 and "no result yet" in response.json()["detail"]

    def test_feedback_needs_authentication(self, reviewed: Reviewed) -> None:
        response = reviewed.client.post("/api/v1/feedback", json={"job_id": 1, "agree": True})
        assert response.status_code == 401

    def test_agreement_and_satisfaction_are_metrics(self, reviewed: Reviewed) -> None:
        assert reviewed.post(job_id=reviewed.job.id, agree=True, satisfaction=3).status_code == 201
        (stats,) = reviewed.node.feedback.stats()
        assert stats.satisfaction_mean is not None
        text = reviewed.client.get("/metrics").text
        label = f'{{model="{LIVE}"}}'
        assert f"mammo_node_feedback_count{label} {float(stats.count)}" in text
        assert f"mammo_node_feedback_agreement_ratio{label} {stats.agreement_ratio}" in text
        assert f"mammo_node_feedback_satisfaction_mean{label} {stats.satisfaction_mean}" in text


class TestFeedbackCommand:
    def test_record_and_export_labels(
        self, reviewed: Reviewed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        data = ("--data-dir", str(reviewed.node.settings.data_dir))
        job = str(reviewed.job.id)
        assert (
            run_command(
                "feedback",
                job,
                "--agree",
                "--birads",
                "1",
                "--satisfaction",
                "5",
                "--comment",
                "Seen by Dr Who",
                *data,
            )
            == 0
        )
        assert '"birads": 1' in capsys.readouterr().out
        out = tmp_path / "labels.csv"
        assert run_command("feedback", "export", "--out", str(out), *data) == 0
        rows = list(csv.DictReader(out.open()))
        exam_row = next(r for r in rows if r["finding"] == "0")
        assert exam_row["StudyInstanceUID"] == str(reviewed.exam[0].StudyInstanceUID)
        assert set(exam_row["SOPInstanceUIDs"].split()) == {
            str(ds.SOPInstanceUID) for ds in reviewed.exam
        }
        assert (exam_row["model"], exam_row["agree"], exam_row["birads"]) == (LIVE, "1", "1")
        for finding_row in (r for r in rows if r["finding"] != "0"):
            assert finding_row["finding_SOPInstanceUID"] in exam_row["SOPInstanceUIDs"]
            assert "finding" in finding_row["finding_tracking_id"]
        text = out.read_text()
        # Labels only: no free text, no names or patient ids.
        assert "Dr Who" not in text
        for ds in reviewed.exam:
            assert str(ds.PatientID) not in text and str(ds.PatientName) not in text

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["1"], "say --agree or --disagree"),
            (["1", "--agree", "--birads", "9"], "birads must be a BI-RADS category 0-6"),
            (["one", "--agree"], "expected a job number or 'export'"),
            (["export"], "needs --out FILE"),
        ],
    )
    def test_bad_command_lines_say_why(
        self, reviewed: Reviewed, argv: list[str], message: str
    ) -> None:
        data = ["--data-dir", str(reviewed.node.settings.data_dir)]
        with pytest.raises(InvalidFeedback, match=message):
            run_command("feedback", *argv, *data)
