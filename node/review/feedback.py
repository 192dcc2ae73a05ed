"""Radiologists' feedback on the node's results, kept with the job and exported as labels.

One row per job and finding (finding 0 is the exam as a whole): does the radiologist agree,
their final assessment (BI-RADS 0-6), the pathology outcome when known, and how useful the
result was (satisfaction 1-5). A later submission for the same job and finding replaces the
earlier one (pathology often arrives weeks after the reading). Findings are numbered 1..N
across the exam in the job result's image order, as listed by ``mammo-node jobs ID``.

The export carries DICOM UIDs, the model version and labels only; the free-text comment
stays in the database, since free text may name people.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import feedback_table, jobs_table, upgrade
from node.domain import ExamSummary
from node.errors import InvalidFeedback, JobNotReviewable
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore

PATHOLOGY = ("benign", "malignant", "none")
MAX_COMMENT = 2000
EXPORT_COLUMNS = (
    "job_id",
    "StudyInstanceUID",
    "SOPInstanceUIDs",
    "model",
    "finding",
    "finding_SOPInstanceUID",
    "finding_tracking_id",
    "agree",
    "birads",
    "pathology",
    "satisfaction",
    "exam_score",
    "recall",
    "at",
)


@dataclass(frozen=True)
class Feedback:
    """One radiologist's verdict on a job's result; valid once built."""

    job_id: int
    agree: bool
    finding: int = 0
    birads: int | None = None
    pathology: str | None = None
    satisfaction: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        def whole(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not whole(self.job_id) or self.job_id < 1:
            raise InvalidFeedback(f"job_id must be a job number >= 1, got {self.job_id!r}")
        if not isinstance(self.agree, bool):
            raise InvalidFeedback(f"agree must be true or false, got {self.agree!r}")
        if not whole(self.finding) or self.finding < 0:
            raise InvalidFeedback(
                f"finding must be 0 (the exam) or a finding number >= 1, got {self.finding!r}"
            )
        if self.birads is not None and (not whole(self.birads) or not 0 <= self.birads <= 6):
            raise InvalidFeedback(f"birads must be a BI-RADS category 0-6, got {self.birads!r}")
        if self.pathology is not None and self.pathology not in PATHOLOGY:
            raise InvalidFeedback(
                f"pathology must be one of {', '.join(PATHOLOGY)}, got {self.pathology!r}"
            )
        if self.satisfaction is not None and (
            not whole(self.satisfaction) or not 1 <= self.satisfaction <= 5
        ):
            raise InvalidFeedback(f"satisfaction must be 1-5, got {self.satisfaction!r}")
        if self.comment is not None and (
            not isinstance(self.comment, str) or len(self.comment) > MAX_COMMENT
        ):
            raise InvalidFeedback(f"comment must be text of at most {MAX_COMMENT} characters")


@dataclass(frozen=True)
class FeedbackStats:
    """Feedback figures per model version, as the metrics expose them."""

    model: str
    count: int
    agreeing: int
    satisfaction_count: int
    satisfaction_mean: float | None

    @property
    def agreement_ratio(self) -> float:
        return self.agreeing / self.count if self.count else 0.0


def finding_locations(result: ExamSummary) -> list[tuple[str, str]]:
    """(SOPInstanceUID, tracking id) of findings 1..N, in the job result's image order.

    The tracking id is the one the SEG segment and SR group carry (e.g. "L CC finding 1").
    """
    locations = []
    for image in result.images:
        view = f"{image.ImageLaterality} {image.ViewPosition}".strip()
        for index in range(image.findings):
            locations.append((image.SOPInstanceUID, f"{view} finding {index + 1}".strip()))
    return locations


class FeedbackStore:
    """Records feedback on done jobs and reads it back for export and metrics."""

    def __init__(
        self, engine: Engine, jobs: JobStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.jobs = jobs
        self.clock = clock
        upgrade(engine)

    def record(self, feedback: Feedback) -> dict[str, Any]:
        """Store ``feedback`` (replacing an earlier one for the same job and finding).

        Raises NotFound for an unknown job, JobNotReviewable for a job without a result and
        InvalidFeedback for a finding number the result does not have.
        """
        job = self.jobs.get(feedback.job_id)
        if job.state is not JobState.DONE or not job.result:
            raise JobNotReviewable(f"job {job.id} is {job.state.value}: it has no result yet")
        findings = len(finding_locations(ExamSummary.from_json(job.result)))
        if feedback.finding > findings:
            raise InvalidFeedback(
                f"finding {feedback.finding} does not exist: job {job.id} has {findings} "
                "finding(s), numbered 1..N in image order (0 is the exam)"
            )
        values = asdict(feedback) | {"at": self.clock()}
        table = feedback_table
        with self.engine.begin() as connection:
            connection.execute(
                table.delete().where(
                    (table.c.job_id == feedback.job_id) & (table.c.finding == feedback.finding)
                )
            )
            connection.execute(table.insert().values(**values))
        return values

    def for_job(self, job_id: int) -> list[dict[str, Any]]:
        query = (
            sa.select(feedback_table)
            .where(feedback_table.c.job_id == job_id)
            .order_by(feedback_table.c.finding)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def stats(self) -> list[FeedbackStats]:
        """Agreement and mean satisfaction per model version (of the job that was reviewed)."""
        f = feedback_table
        query = (
            sa.select(
                jobs_table.c.model_ref,
                sa.func.count(),
                sa.func.sum(sa.case((f.c.agree, 1), else_=0)),
                sa.func.count(f.c.satisfaction),
                sa.func.avg(f.c.satisfaction),
            )
            .join(jobs_table, jobs_table.c.id == f.c.job_id)
            .group_by(jobs_table.c.model_ref)
            .order_by(jobs_table.c.model_ref)
        )
        with self.engine.connect() as connection:
            return [
                FeedbackStats(
                    str(model),
                    int(count),
                    int(agreeing or 0),
                    int(rated),
                    float(mean) if mean is not None else None,
                )
                for model, count, agreeing, rated, mean in connection.execute(query)
            ]

    def label_rows(self) -> Iterable[dict[str, Any]]:
        """One export row per feedback: UIDs, model version and labels; no free text."""
        query = sa.select(feedback_table).order_by(
            feedback_table.c.job_id, feedback_table.c.finding
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        jobs: dict[int, Job] = {}
        for row in rows:
            if row["job_id"] not in jobs:
                jobs[row["job_id"]] = self.jobs.get(row["job_id"])
            job = jobs[row["job_id"]]
            result = ExamSummary.from_json(job.result) if job.result else None
            locations = finding_locations(result) if result else []
            finding_uid, tracking = ("", "")
            if 0 < row["finding"] <= len(locations):
                finding_uid, tracking = locations[row["finding"] - 1]
            yield {
                "job_id": job.id,
                "StudyInstanceUID": job.study_instance_uid,
                "SOPInstanceUIDs": " ".join(i.SOPInstanceUID for i in result.images)
                if result
                else "",
                "model": result.model if result else job.model_ref,
                "finding": row["finding"],
                "finding_SOPInstanceUID": finding_uid,
                "finding_tracking_id": tracking,
                "agree": int(row["agree"]),
                "birads": "" if row["birads"] is None else row["birads"],
                "pathology": row["pathology"] or "",
                "satisfaction": "" if row["satisfaction"] is None else row["satisfaction"],
                "exam_score": result.score if result else "",
                "recall": int(result.recall) if result else "",
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["at"])),
            }

    def export_csv(self, out: Path) -> int:
        """Write the labels for the next training round; returns the number of rows."""
        out.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for row in self.label_rows():
                writer.writerow(row)
                count += 1
        return count
