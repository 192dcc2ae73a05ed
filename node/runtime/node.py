"""Composition root: builds the node from Settings and wires every part together.

The only module (with the CLI) that knows every layer; the layers themselves know only
the ones below them.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import socket
import threading
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry

from node.config import Destination, Settings
from node.db import create_engine
from node.delivery.publishers import publisher_for
from node.delivery.service import Deliveries
from node.errors import MammoNodeError, NotFound
from node.events import EventBus, ExamScored, JobTransitioned
from node.inference.scoring import ImageModel
from node.inference.threads import apply_thread_policy, lower_thread_priority
from node.ingest.intake import ExamIntake
from node.ingest.reconcile import Reconciler
from node.jobs.states import JobState
from node.jobs.store import Job, JobStore
from node.jobs.worker import Doorbell, Worker, WorkerOptions, new_worker_id
from node.models.lifecycle import ModelLifecycle, live_model_ref
from node.models.registry import load_model
from node.models.trained_on import synthetic_only_warning
from node.net.dicomweb import DicomWebClient
from node.net.orthanc_rest import OrthancRest
from node.observability.metrics import NodeMetrics
from node.observability.review_metrics import register_review_metrics
from node.review.feedback import FeedbackStore
from node.review.shadow import ShadowStore, shadow_runner_for
from node.runtime.checks import Check, run_checks
from node.runtime.current_model import CurrentModel, SwitchingPipeline
from node.runtime.disk import free_space
from node.runtime.runfile import read_runtime_file
from node.writers.outputs import BuildOptions

log = logging.getLogger(__name__)

HEALTH_PROBE_SECONDS = 0.4  # per phase (connect, read): /healthz stays under a second


def node_identity(data_dir: Path) -> str:
    """This node across restarts: its host and data dir (the prefix of its worker ids)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return f"{socket.gethostname()}:{digest}"


def lock_data_dir(data_dir: Path) -> IO[str] | None:
    """An exclusive lock on ``data_dir/node.lock`` for the process's life; None when another
    live node holds it (two ``serve`` on one data dir), whose leases must then be left alone.
    The kernel drops the lock when its holder dies, however it dies."""
    handle = open(data_dir / "node.lock", "a")  # held until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


class Node:
    """The running service: job store, intake, reconciler and workers around one model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_token = settings.api_token
        self.console_users = settings.console_users
        self.bus = EventBus()
        # Idle workers wake when a job is queued here, not at their next poll.
        self.doorbell = Doorbell()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(create_engine(settings.effective_database_url))
        self.store.subscribe(self._transitioned)
        self.metrics = NodeMetrics(self.store.counts_by_state)
        self.metrics.subscribe(self.bus)
        self.registry: CollectorRegistry = self.metrics.registry

        apply_thread_policy(settings.workers, settings.torch_threads)
        self.model: ImageModel = load_model(
            settings.models_dir,
            live_model_ref(settings.models_dir, settings.model),
            settings.device,
        )
        spec = self.model.spec
        self.metrics.set_model(spec.model_id, spec.version)

        self.orthanc = OrthancRest(
            settings.orthanc_base_url, settings.http_user, settings.http_password
        )
        # /healthz answers within a second even when Orthanc hangs (frozen, swapping).
        self._orthanc_probe = OrthancRest(
            settings.orthanc_base_url,
            settings.http_user,
            settings.http_password,
            timeout=HEALTH_PROBE_SECONDS,
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
            grouping=settings.exam_grouping,
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
        self.metrics.watch_free_space(self._free_and_reserve)
        self._disk_low = False
        self.pipeline = SwitchingPipeline(
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
            settings.models_dir,
            spec.ref,
            self.shadow_results,
            settings.expected_views,
            device=settings.device,
        )
        # promote / rollback / shadow take effect at the next inference (node.runtime.current_model).
        self.pipeline.current = CurrentModel(
            self.pipeline,
            settings.models_dir,
            self.shadow_results,
            self.shadow,
            pinned=bool(settings.model.strip()),
            on_switch=self._model_switched,
            device=settings.device,
        )
        self.bus.subscribe(ExamScored, self._exam_scored)
        register_review_metrics(self.registry, self.feedback.stats, self.shadow_results.agreement)
        options = WorkerOptions(
            lease_seconds=settings.lease_seconds,
            backoff_seconds=settings.backoff_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
            poll_seconds=settings.poll_seconds,
        )
        self.identity = node_identity(settings.data_dir)
        self._data_dir_lock = lock_data_dir(settings.data_dir)
        # Only the holder of the data dir's lock names its workers by the node identity: a
        # node restarting there releases those leases, never a live neighbour's.
        owner = self.identity if self._data_dir_lock is not None else None
        self.workers = [
            Worker(
                self.store, self.pipeline, self.bus, options, new_worker_id(owner), self.doorbell
            )
            for _ in range(settings.workers)
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _model_switched(self, model: ImageModel) -> None:
        self.model = model
        self.intake.model_ref = model.spec.ref  # exams from now on are jobs of the new live model
        self.metrics.set_model(model.spec.model_id, model.spec.version)

    def _transitioned(
        self, job: Job, old: JobState | None, new: JobState, reason: str | None
    ) -> None:
        if new in (JobState.QUEUED, JobState.RETRY):
            self.doorbell.ring()
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
        self.reclaim_predecessor_jobs()
        for index, worker in enumerate(self.workers):
            self._spawn(f"worker-{index}", self._work, worker)
        self._spawn("reconciler", self._reconcile_loop)
        self._spawn("deliveries", self.deliveries.run, self._stop, self.settings.poll_seconds)
        log.info(
            "node started",
            extra={
                "model": self.model.spec.ref,
                "device": str(getattr(self.model, "device", "cpu")),
                "workers": len(self.workers),
            },
        )

    def reclaim_predecessor_jobs(self) -> None:
        """Jobs leased by an earlier run of this node on this data dir go back at once: that
        process is dead (we hold the data dir's lock), so its leases need not run out."""
        if self._data_dir_lock is None:
            log.info("another node runs on this data dir; its leases are left to expire")
            return
        released = self.store.release_leases(
            self.identity + "/", "node restarted on the same data dir"
        )
        for job in released:
            log.warning("job of the previous run taken up again", extra={"job_id": job.id})

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self, worker: Worker) -> None:
        """One worker's loop, at the workers' CPU priority (its stage threads inherit it)."""
        lower_thread_priority(self.settings.worker_nice)
        worker.run(self._stop)

    def _free_and_reserve(self) -> tuple[int, int]:
        space = free_space(self.settings.data_dir)
        return space.free, space.reserve

    def _watch_disk(self) -> None:
        """Log once when the data dir's disk falls under its reserve, and once when it is back."""
        try:
            space = free_space(self.settings.data_dir)
        except OSError as error:
            log.warning("cannot read the free space of the data dir: %s", error)
            return
        if space.low != self._disk_low:
            self._disk_low = space.low
            if space.low:
                log.error("disk nearly full: %s", space.describe())
            else:
                log.info("disk space is back: %s", space.describe())

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._watch_disk()
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
        self.doorbell.ring()  # idle workers end their wait now
        for thread in self._threads:
            thread.join(timeout / max(1, len(self._threads)))
        if self._data_dir_lock is not None:
            self._data_dir_lock.close()
            self._data_dir_lock = None
        log.info("node stopped")

    # -- services for the API -------------------------------------------------------------

    def _exam_scored(self, event: ExamScored) -> None:
        """The shadow model (whichever is current) scores the exam the live model scored."""
        current = self.pipeline.current
        shadow = current.shadow if current is not None else self.shadow
        if shadow is not None:
            shadow.run(event)

    @property
    def running_models(self) -> dict[str, str | None]:
        """The models this process runs (the registry may have changed since it started)."""
        current = self.pipeline.current
        shadow = current.shadow if current is not None else self.shadow
        return {
            "live": self.model.spec.ref,
            "shadow": shadow.ref if shadow is not None else None,
        }

    def refresh_models(self) -> None:
        """Follow registry.yaml now (after a console action) rather than at the next job."""
        if self.pipeline.current is not None:
            self.pipeline.current.refresh()

    @property
    def model_warning(self) -> str | None:
        """Said on every console page while the live model is synthetic-only."""
        return synthetic_only_warning(self.model.spec)

    def checks(self) -> list[Check]:
        """``mammo-node doctor``'s checks, for the console's health page."""
        return run_checks(self.settings, read_runtime_file(self.settings.data_dir))

    def stable_study(self, orthanc_study_id: str) -> None:
        try:
            self.intake.stable_study(orthanc_study_id)
            self.doorbell.ring()  # a regrouped job may be due now (no transition rings)
        except NotFound:
            log.info("study gone before intake", extra={"orthanc_study": orthanc_study_id})
        except MammoNodeError as error:
            # The reconciler finds the study again in /changes.
            log.warning("intake failed; reconciliation will retry: %s", error)

    def study_grew(self, orthanc_study_id: str) -> None:
        """A new instance arrived: an exam that now holds every expected view starts at once;
        any other waits for its stable study (Orthanc's StableAge)."""
        try:
            if self.intake.stable_study(orthanc_study_id, only_complete=True) is not None:
                self.doorbell.ring()
        except NotFound:
            log.info("study gone before intake", extra={"orthanc_study": orthanc_study_id})
        except MammoNodeError as error:
            # Not lost: the stable study (or reconciliation) takes the exam in.
            log.info("early intake failed; the stable study will retry: %s", error)

    def health(self) -> dict[str, Any]:
        checks: dict[str, Any] = {"model": self.model.spec.ref}
        try:
            self._orthanc_probe.ping()
            checks["orthanc"] = "ok"
        except MammoNodeError as error:
            checks["orthanc"] = str(error)
        alive = all(t.is_alive() for t in self._threads) and bool(self._threads)
        checks["threads"] = "ok" if alive else "not running"
        try:
            # Said, not failed on: a node short of disk still works its queue, and a restart
            # (what a failing liveness probe brings) would not free a byte.
            checks["disk"] = free_space(self.settings.data_dir).describe()
        except OSError as error:
            checks["disk"] = f"unreadable: {error}"
        checks["ok"] = checks["orthanc"] == "ok" and alive
        return checks
