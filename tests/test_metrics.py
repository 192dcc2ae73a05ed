"""Metrics: what the dashboard plots exists, and labels never carry identifiers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from node.events import EventBus, JobFailed, JobTransitioned, SeriesRouted, StageFinished
from node.jobs.states import JobState
from node.observability.metrics import NodeMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "monitoring" / "grafana-dashboard.json"


def exercised_metrics() -> str:
    counts = {state: 0 for state in JobState} | {JobState.QUEUED: 2, JobState.RETRY: 1}
    metrics = NodeMetrics(lambda: counts)
    bus = EventBus()
    metrics.subscribe(bus)
    metrics.set_model("synthetic-unet", "0.1.0")
    bus.emit(StageFinished(1, "inferring", 0.4))
    bus.emit(JobTransitioned(1, "publishing", "done", None, created_at=10.0, at=13.5))
    bus.emit(JobFailed(2, "PeerUnavailable", final=False))
    bus.emit(SeriesRouted("ignored", "modality", 3))
    return generate_latest(metrics.registry).decode()


def test_queue_depth_counts_queued_and_retry() -> None:
    assert "mammo_node_queue_depth 3.0" in exercised_metrics()


def test_every_dashboard_metric_exists() -> None:
    text = exercised_metrics()
    exposed = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")
    }
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"mammo_node_[a-z_]+", target["expr"])
    }
    assert used and used <= exposed, used - exposed


def test_labels_hold_no_uids() -> None:
    assert not re.search(r'"\d+(\.\d+){3,}"', exercised_metrics())
