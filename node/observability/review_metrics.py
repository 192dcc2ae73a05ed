"""Gauges of how the models are received: radiologists' feedback and shadow agreement.

Computed from the database at scrape time (like the job-state gauges), so every replica
reports the same truth. Labels are model versions only, never UIDs or anything about a patient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from node.review.feedback import FeedbackStats
from node.review.shadow import Agreement


class ReviewCollector(Collector):
    def __init__(
        self,
        feedback: Callable[[], Sequence[FeedbackStats]],
        shadow: Callable[[], Sequence[Agreement]],
    ) -> None:
        self._feedback = feedback
        self._shadow = shadow

    def collect(self) -> Iterable[GaugeMetricFamily]:
        count = GaugeMetricFamily(
            "mammo_node_feedback_count", "Feedback records per model", labels=["model"]
        )
        agreement = GaugeMetricFamily(
            "mammo_node_feedback_agreement_ratio",
            "Share of feedback in which the radiologist agreed with the model",
            labels=["model"],
        )
        satisfaction = GaugeMetricFamily(
            "mammo_node_feedback_satisfaction_mean",
            "Mean satisfaction rating (1-5) given by radiologists",
            labels=["model"],
        )
        for stats in self._feedback():
            count.add_metric([stats.model], stats.count)
            agreement.add_metric([stats.model], stats.agreement_ratio)
            if stats.satisfaction_mean is not None:
                satisfaction.add_metric([stats.model], stats.satisfaction_mean)
        yield count
        yield agreement
        yield satisfaction
        shadow_ratio = GaugeMetricFamily(
            "mammo_node_shadow_agreement_ratio",
            "Share of exams where the shadow model's recall suggestion matched the live model's",
            labels=["live_model", "shadow_model"],
        )
        shadow_jobs = GaugeMetricFamily(
            "mammo_node_shadow_jobs",
            "Exams scored by the shadow model",
            labels=["live_model", "shadow_model"],
        )
        for pair in self._shadow():
            shadow_ratio.add_metric([pair.live_model, pair.shadow_model], pair.ratio)
            shadow_jobs.add_metric([pair.live_model, pair.shadow_model], pair.jobs)
        yield shadow_ratio
        yield shadow_jobs


def register_review_metrics(
    registry: CollectorRegistry,
    feedback: Callable[[], Sequence[FeedbackStats]],
    shadow: Callable[[], Sequence[Agreement]],
) -> None:
    registry.register(ReviewCollector(feedback, shadow))
