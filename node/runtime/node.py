"""Composition root: builds the node from Settings and wires every part together.

The only module (with the CLI) that knows every layer; the layers themselves know only
the ones below them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from node.config import Destination, Settings
from node.db import create_engine
from node.delivery.publishers import publisher_for
from node.delivery.service import Deliveries
from node.errors import MammoNodeError, NotFound
from node.events import EventBus, ExamScored, JobTransitioned
from node.ingest.intake import ExamIntake
from node.ingest.reconcile import Reconciler
from node.jobs.pipeline import ExamPipeline
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.jobs.worker import Worker, WorkerOptions
from node.models.lifecycle import ModelLifecycle, live_model_ref
from node.models.registry import load_model
from node.net.dicomweb import DicomWebClient
from node.net.orthanc_rest import OrthancRest
from node.observability.metrics import NodeMetrics
from node.observability.review_metrics import register_review_metrics
from node.review.feedback import FeedbackStore
from node.review.shadow import ShadowStore, shadow_runner_for
from node.writers.outputs import BuildOptions

log = logging.getLogger(__name__)


class Node:
    """The running service: job store, intake, reconciler and workers around one model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_token = settings.api_token
        self.admin_credentials = (settings.http_user, settings.http_password)
        self.bus = EventBus()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(create_engine(settings.effective_database_url))
        self.store.subscribe(self._transitioned)
        self.metrics = NodeMetrics(self.store.counts_by_state)
        self.metrics.subscribe(self.bus)
        self.registry: CollectorRegistry = self.metrics.registry

        self.model = load_model(
            settings.models_dir, live_model_ref(settings.models_dir, settings.model)
        )
        spec = self.model.spec
        self.metrics.set_model(spec.model_id, spec.version)

        self.orthanc = OrthancRest(
            settings.orthanc_base_url, settings.http_user, settings.http_password
        )
        self.intake = ExamIntake(
            self.orthanc,
            self.store,
            self.bus,
            settings.routing,
            model_ref=spec.ref,
            max_attempts=settings.max_attempts,
            expected_views=settings.expected_views,
            assembly_timeout=settings.assembly_timeout_seconds,
        )
        self.reconciler = Reconciler(self.orthanc, self.store, self.intake)
        source = DicomWebClient(
            Destination(
                name="orthanc",
                url=f"{settings.orthanc_base_url}/dicom-web",
                username=settings.http_user,
                password=settings.http_password,
            )
        )
        # Each destination with its own output selection, retries and dead letter.
        self.deliveries = Deliveries(
            self.store.engine,
            [publisher_for(d) for d in settings.effective_destinations],
            settings.data_dir / "outbox",
        )
        self.metrics.watch_deliveries(self.deliveries.counts)
        self.pipeline = ExamPipeline(
            self.model,
            source,
            self.deliveries,
            store=self.store,
            bus=self.bus,
            expected_views=settings.expected_views,
            options=BuildOptions(language=settings.summary_language),
            max_image_pixels=settings.max_image_pixels,
            stage_timeout=settings.stage_timeout_seconds,
        )
        # Model lifecycle, shadow mode and feedback (node.models.lifecycle, node.review.feedback).
        self.lifecycle = ModelLifecycle(settings.models_dir)
        self.feedback = FeedbackStore(self.store.engine, self.store)
        self.shadow_results = ShadowStore(self.store.engine)
        # The shadow model observes scored exams; the pipeline does not know it exists.
        self.shadow = shadow_runner_for(
            settings.models_dir, spec.ref, self.shadow_results, settings.expected_views
        )
        if self.shadow is not None:
            self.bus.subscribe(ExamScored, self.shadow.run)
        register_review_metrics(self.registry, self.feedback.stats, self.shadow_results.agreement)
        options = WorkerOptions(
            lease_seconds=settings.lease_seconds,
            backoff_seconds=settings.backoff_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
            poll_seconds=settings.poll_seconds,
        )
        self.workers = [
            Worker(self.store, self.pipeline, self.bus, options) for _ in range(settings.workers)
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _transitioned(
        self, job: Job, old: JobState | None, new: JobState, reason: str | None
    ) -> None:
        self.bus.emit(
            JobTransitioned(
                job.id,
                old.value if old else None,
                new.value,
                reason,
                job.created_at,
                job.updated_at,
            )
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for index, worker in enumerate(self.workers):
            self._spawn(f"worker-{index}", worker.run, self._stop)
        self._spawn("reconciler", self._reconcile_loop)
        self._spawn("deliveries", self.deliveries.run, self._stop, self.settings.poll_seconds)
        log.info(
            "node started",
            extra={
                "model": self.model.spec.ref,
                "workers": len(self.workers),
            },
        )

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.reconciler.run_once()
                if handled:
                    log.info("reconciled stable studies from /changes", extra={"studies": handled})
            except MammoNodeError as error:
                log.warning("reconciliation failed; will try again: %s", error)
            self._stop.wait(self.settings.reconcile_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loops; a job cut short keeps its lease and is taken up after restart."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout / max(1, len(self._threads)))
        log.info("node stopped")

    # -- services for the API -------------------------------------------------------------

    @property
    def running_models(self) -> dict[str, str | None]:
        """The models this process runs (the registry may have changed since it started)."""
        shadow = self.shadow
        return {
            "live": self.model.spec.ref,
            "shadow": shadow.ref if shadow is not None else None,
        }

    def stable_study(self, orthanc_study_id: str) -> None:
        try:
            self.intake.stable_study(orthanc_study_id)
        except NotFound:
            log.info("study gone before intake", extra={"orthanc_study": orthanc_study_id})
        except MammoNodeError as error:
            # The reconciler finds the study again in /changes.
            log.warning("intake failed; reconciliation will retry: %s", error)

    def health(self) -> dict[str, Any]:
        checks: dict[str, Any] = {"model": self.model.spec.ref}
        try:
            self.orthanc.ping()
            checks["orthanc"] = "ok"
        except MammoNodeError as error:
            checks["orthanc"] = str(error)
        alive = all(t.is_alive() for t in self._threads) and bool(self._threads)
        checks["threads"] = "ok" if alive else "not running"
        checks["ok"] = checks["orthanc"] == "ok" and alive
        return checks
