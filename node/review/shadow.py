"""Shadow mode: a candidate model runs beside the live one on real traffic, unpublished.

After the live model has scored an exam, the pipeline emits ExamScored with the prepared
images; the shadow runner, subscribed to it, scores them with the shadow model
(``node.inference.scoring``, the live model's own path). Its exam score and recall
suggestion are stored beside the live ones in ``shadow_results`` (one row per job and shadow model), never written as DICOM and never sent
anywhere. Agreement (same recall suggestion) per model pair tells whether the candidate
would change what radiologists are shown. A shadow failure is logged and never fails the job:
it is a notification subscriber, an observer of the work, not part of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from node.config import DEFAULT_EXPECTED_VIEWS
from node.db import shadow_results_table, upgrade
from node.errors import InvalidModelConfig, LifecycleError, MammoNodeError, ModelNotFound
from node.events import ExamScored
from node.inference.scoring import ImageModel, score_images
from node.models.lifecycle import ModelLifecycle
from node.models.registry import load_model

log = logging.getLogger(__name__)


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
        upgrade(engine)

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


class ShadowRunner:
    """Scores with the shadow model each exam the live model has scored (see module doc).

    Subscribed to ExamScored by the composition root; the pipeline does not know it exists.
    """

    def __init__(
        self,
        model: ImageModel,
        store: ShadowStore,
        expected_views: tuple[str, ...] = DEFAULT_EXPECTED_VIEWS,
    ) -> None:
        self.model = model
        self.store = store
        self.expected_views = expected_views

    @property
    def ref(self) -> str:
        return self.model.spec.ref

    def score(self, event: ExamScored) -> ShadowResult:
        """The shadow model's verdict on the images the live model scored, read the same way."""
        started = time.monotonic()
        live = event.exam
        shadow = score_images(
            self.model, event.images, expected_views=self.expected_views, revision=live.revision
        )
        return ShadowResult(
            job_id=event.job_id,
            live_model=live.model.ref,
            shadow_model=self.ref,
            live_score=round(live.score, 4),
            live_recall=live.recall,
            shadow_score=round(shadow.score, 4),
            shadow_recall=shadow.recall,
            agree=shadow.recall == live.recall,
            images=len(shadow.images),
            seconds=round(time.monotonic() - started, 4),
        )

    def run(self, event: ExamScored) -> ShadowResult | None:
        """Score and store. A failure of the shadow model or its table is logged and the job
        goes on; anything else is logged by the event bus, which never fails the job either."""
        try:
            result = self.score(event)
            self.store.record(result)
        except (MammoNodeError, ValueError, RuntimeError, SQLAlchemyError):
            log.exception("shadow model failed", extra={"job_id": event.job_id})
            return None
        log.info(
            "shadow scored",
            extra={"job_id": event.job_id, "shadow_model": self.ref, "agree": result.agree},
        )
        return result


def shadow_runner_for(
    models_dir: Path,
    live_ref: str,
    store: ShadowStore,
    expected_views: tuple[str, ...] = DEFAULT_EXPECTED_VIEWS,
    *,
    device: str = "auto",
) -> ShadowRunner | None:
    """The registry's shadow model ready to run, or None (none set, or it is the live one).

    A shadow that cannot be loaded is logged and left out: it must not stop the live model.
    """
    try:
        ref = ModelLifecycle(models_dir).shadow_ref()
        if ref is None or ref == live_ref:
            return None
        model = load_model(models_dir, ref, device)
    except (LifecycleError, ModelNotFound, InvalidModelConfig) as error:
        log.error("shadow model not started: %s", error)
        return None
    log.info("shadow model running", extra={"shadow_model": ref, "live_model": live_ref})
    return ShadowRunner(model, store, expected_views)
