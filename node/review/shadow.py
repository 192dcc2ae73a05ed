"""Shadow mode: a candidate model runs beside the live one on real traffic, unpublished.

After the live model has scored an exam, the pipeline hands the same images to the shadow
model; its exam score and recall suggestion are stored beside the live ones in
``shadow_results`` (one row per job and shadow model), never written as DICOM and never sent
anywhere. Agreement (same recall suggestion) per model pair tells whether the candidate
would change what radiologists are shown. A shadow failure is logged and never fails the job:
like a notification hook, it is an observer of the work, not part of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.dicom.pixels import presentation_pixels
from node.domain import ExamResult, ImageResult
from node.errors import InvalidInput, InvalidModelConfig, LifecycleError, ModelNotFound
from node.inference.runner import LoadedModel
from node.jobs.store import metadata
from node.models.lifecycle import ModelLifecycle
from node.models.registry import load_model

if TYPE_CHECKING:
    from node.jobs.pipeline import ExamWork

log = logging.getLogger(__name__)

shadow_results_table = sa.Table(
    "shadow_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("live_model", sa.String(128), nullable=False),
    sa.Column("shadow_model", sa.String(128), nullable=False),
    sa.Column("live_score", sa.Float, nullable=False),
    sa.Column("live_recall", sa.Boolean, nullable=False),
    sa.Column("shadow_score", sa.Float, nullable=False),
    sa.Column("shadow_recall", sa.Boolean, nullable=False),
    sa.Column("agree", sa.Boolean, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "shadow_model", name="uq_shadow_job_model"),
)


@dataclass(frozen=True)
class ShadowResult:
    job_id: int
    live_model: str
    shadow_model: str
    live_score: float
    live_recall: bool
    shadow_score: float
    shadow_recall: bool
    agree: bool
    images: int
    seconds: float


@dataclass(frozen=True)
class Agreement:
    """How often a shadow model made the live model's recall suggestion, per model pair."""

    live_model: str
    shadow_model: str
    jobs: int
    agreeing: int
    mean_abs_score_difference: float

    @property
    def ratio(self) -> float:
        return self.agreeing / self.jobs if self.jobs else 0.0


class ShadowStore:
    """The ``shadow_results`` table; a retried job replaces its earlier shadow row."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        metadata.create_all(engine, tables=[shadow_results_table])

    def record(self, result: ShadowResult) -> None:
        table = shadow_results_table
        with self.engine.begin() as connection:
            connection.execute(
                table.delete().where(
                    (table.c.job_id == result.job_id)
                    & (table.c.shadow_model == result.shadow_model)
                )
            )
            connection.execute(table.insert().values(at=self.clock(), **asdict(result)))

    def for_job(self, job_id: int) -> list[ShadowResult]:
        table = shadow_results_table
        query = sa.select(table).where(table.c.job_id == job_id).order_by(table.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            ShadowResult(**{k: v for k, v in row.items() if k not in ("id", "at")}) for row in rows
        ]

    def agreement(self) -> list[Agreement]:
        table = shadow_results_table
        query = (
            sa.select(
                table.c.live_model,
                table.c.shadow_model,
                sa.func.count(),
                sa.func.sum(sa.case((table.c.agree, 1), else_=0)),
                sa.func.avg(sa.func.abs(table.c.live_score - table.c.shadow_score)),
            )
            .group_by(table.c.live_model, table.c.shadow_model)
            .order_by(table.c.live_model, table.c.shadow_model)
        )
        with self.engine.connect() as connection:
            return [
                Agreement(live, shadow, int(jobs), int(agreeing or 0), float(diff or 0.0))
                for live, shadow, jobs, agreeing, diff in connection.execute(query)
            ]


def _ref(exam: ExamResult) -> str:
    return exam.model.ref


class ShadowRunner:
    """Runs the shadow model on an exam the live model has just scored (see module doc)."""

    def __init__(self, model: LoadedModel, store: ShadowStore) -> None:
        self.model = model
        self.store = store

    @property
    def ref(self) -> str:
        return self.model.spec.ref

    def score(self, work: ExamWork) -> ShadowResult:
        """The shadow model's verdict on the images the live model used."""
        if work.exam is None:
            raise ValueError("the live model has not scored this exam yet")
        started = time.monotonic()
        live_images = {i.source.SOPInstanceUID: i for i in work.exam.images}
        results: list[ImageResult] = []
        for dataset in work.sources:
            live = live_images.get(str(dataset.SOPInstanceUID))
            if live is None:
                continue
            # pydicom keeps the decoded pixel array, so this does not decode a second time.
            pixels = presentation_pixels(dataset)
            prediction = self.model.predict(pixels, live.source.ImageLaterality)
            results.append(ImageResult(source=live.source, prediction=prediction))
        if not results:
            raise InvalidInput("no image the live model scored is left for the shadow model")
        shadow = replace(work.exam, model=self.model.spec, images=results)
        return ShadowResult(
            job_id=work.job.id,
            live_model=_ref(work.exam),
            shadow_model=self.ref,
            live_score=round(work.exam.score, 4),
            live_recall=work.exam.recall,
            shadow_score=round(shadow.score, 4),
            shadow_recall=shadow.recall,
            agree=shadow.recall == work.exam.recall,
            images=len(results),
            seconds=round(time.monotonic() - started, 4),
        )

    def run(self, work: ExamWork) -> ShadowResult | None:
        """Score and store; any failure is logged and swallowed, so the job goes on."""
        try:
            result = self.score(work)
            self.store.record(result)
        except Exception:  # an observer must never fail the job (see module doc)
            log.exception("shadow model failed", extra={"job_id": work.job.id})
            return None
        log.info(
            "shadow scored",
            extra={"job_id": work.job.id, "shadow_model": self.ref, "agree": result.agree},
        )
        return result


def shadow_runner_for(models_dir: Path, live_ref: str, store: ShadowStore) -> ShadowRunner | None:
    """The registry's shadow model ready to run, or None (none set, or it is the live one).

    A shadow that cannot be loaded is logged and left out: it must not stop the live model.
    """
    try:
        ref = ModelLifecycle(models_dir).shadow_ref()
        if ref is None or ref == live_ref:
            return None
        model = load_model(models_dir, ref)
    except (LifecycleError, ModelNotFound, InvalidModelConfig) as error:
        log.error("shadow model not started: %s", error)
        return None
    log.info("shadow model running", extra={"shadow_model": ref, "live_model": live_ref})
    return ShadowRunner(model, store)
