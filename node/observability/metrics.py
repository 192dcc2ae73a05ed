"""Prometheus metrics of the node. Labels hold states, stages and error classes only:
never UIDs, names or anything else that could identify a patient."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from node.events import (
    EventBus,
    JobFailed,
    JobTransitioned,
    OrthancRestarted,
    SeriesRouted,
    StageFinished,
)
from node.jobs.states import JobState

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
EXAM_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class _JobStateCollector(Collector):
    """Reads job counts from the store at scrape time, so every replica reports the truth."""

    def __init__(self, counts: Callable[[], Mapping[JobState, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = self._counts()
        jobs = GaugeMetricFamily("mammo_node_jobs", "Jobs by state", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state.value], count)
        yield jobs
        depth = counts.get(JobState.QUEUED, 0) + counts.get(JobState.RETRY, 0)
        yield GaugeMetricFamily("mammo_node_queue_depth", "Jobs waiting for a worker", value=depth)


class _DeliveryCollector(Collector):
    """Deliveries by destination (a configured name) and state, read at scrape time."""

    def __init__(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mammo_node_deliveries",
            "Result deliveries by destination and state (dead_letter: gave up)",
            labels=["destination", "state"],
        )
        for (destination, state), count in sorted(self._counts().items()):
            family.add_metric([destination, state], count)
        yield family


class _FreeSpaceCollector(Collector):
    """The data dir's free bytes and the reserve under which new images are refused."""

    def __init__(self, space: Callable[[], tuple[int, int]]) -> None:
        self._space = space

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            free, reserve = self._space()
        except OSError:
            return  # the data dir is unreadable: no figure rather than a false one
        yield GaugeMetricFamily(
            "mammo_node_data_free_bytes", "Free bytes where the data dir is", value=free
        )
        yield GaugeMetricFamily(
            "mammo_node_data_reserve_bytes",
            "Free bytes kept in reserve: below it, Orthanc refuses new images",
            value=reserve,
        )


class NodeMetrics:
    def __init__(self, counts: Callable[[], Mapping[JobState, int]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_JobStateCollector(counts))
        self.stage_seconds = Histogram(
            "mammo_node_stage_duration_seconds",
            "Duration of each job stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.exam_seconds = Histogram(
            "mammo_node_exam_duration_seconds",
            "From job creation to results published",
            buckets=EXAM_BUCKETS,
            registry=self.registry,
        )
        self.transitions = Counter(
            "mammo_node_job_transitions",
            "Job state transitions",
            ["to_state"],
            registry=self.registry,
        )
        self.failures = Counter(
            "mammo_node_job_failures",
            "Failed job attempts by reason",
            ["reason", "final"],
            registry=self.registry,
        )
        self.routing = Counter(
            "mammo_node_routing_decisions",
            "Routing decisions per series",
            ["decision", "reason"],
            registry=self.registry,
        )
        self.orthanc_restarts = Counter(
            "mammo_node_orthanc_restarts",
            "Times the node started its embedded Orthanc again after it exited",
            registry=self.registry,
        )
        self.model_info = Info("mammo_node_model", "The live model", registry=self.registry)

    def watch_deliveries(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self.registry.register(_DeliveryCollector(counts))

    def watch_free_space(self, space: Callable[[], tuple[int, int]]) -> None:
        """``space`` gives (free, reserve) bytes, read at scrape time."""
        self.registry.register(_FreeSpaceCollector(space))

    def set_model(self, model_id: str, version: str) -> None:
        self.model_info.info({"model_id": model_id, "version": version})

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(StageFinished, self._on_stage)
        bus.subscribe(JobTransitioned, self._on_transition)
        bus.subscribe(JobFailed, self._on_failure)
        bus.subscribe(SeriesRouted, self._on_routed)
        bus.subscribe(OrthancRestarted, lambda _event: self.orthanc_restarts.inc())

    def _on_stage(self, event: StageFinished) -> None:
        self.stage_seconds.labels(event.stage).observe(event.seconds)

    def _on_transition(self, event: JobTransitioned) -> None:
        self.transitions.labels(event.to_state).inc()
        if event.to_state == JobState.DONE.value:
            self.exam_seconds.observe(max(0.0, event.at - event.created_at))

    def _on_failure(self, event: JobFailed) -> None:
        self.failures.labels(event.category, "true" if event.final else "false").inc()

    def _on_routed(self, event: SeriesRouted) -> None:
        self.routing.labels(event.decision, event.reason_code).inc()
