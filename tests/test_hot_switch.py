"""Promote, roll back and shadow take effect at the next job without a restart, and never
under an inference in flight (node/runtime/current_model.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from node.config import PromotionMargins
from node.models.lifecycle import ModelLifecycle
from node.runtime.node import Node
from tests.test_shadow import LIVE, SHADOW, build_node, run_inference, small_exam


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return build_node(tmp_path, shadow=None)


def lifecycle(node: Node) -> ModelLifecycle:
    return ModelLifecycle(node.settings.models_dir)


def test_shadow_then_promote_then_rollback_take_effect_at_the_next_job(node: Node) -> None:
    assert node.running_models == {"live": LIVE, "shadow": None}

    lifecycle(node).set_shadow(SHADOW, "compare")
    job, _work = run_inference(node, small_exam(seed=51))
    assert node.running_models == {"live": LIVE, "shadow": SHADOW}
    assert [r.shadow_model for r in node.shadow_results.for_job(job.id)] == [SHADOW]

    lifecycle(node).promote(SHADOW, margins=PromotionMargins(), reason="better")
    _job, work = run_inference(node, small_exam(seed=52))
    assert work.exam is not None and work.exam.model.version == "1.1.0"
    assert node.running_models == {"live": SHADOW, "shadow": None}  # a live model is no shadow
    assert node.intake.model_ref == SHADOW  # new exams are jobs of the new live model

    lifecycle(node).rollback("not better after all")
    node.refresh_models()
    assert node.running_models["live"] == LIVE
    actions = [entry.action for entry in lifecycle(node).read().history]
    assert actions[-3:] == ["shadow", "promote", "rollback"]


def test_a_switch_waits_for_the_inference_in_flight(node: Node) -> None:
    current = node.pipeline.current
    assert current is not None
    inferring, release = threading.Event(), threading.Event()

    def inference_in_flight() -> None:
        with current.in_use():
            inferring.set()
            release.wait(10)

    flight = threading.Thread(target=inference_in_flight)
    flight.start()
    assert inferring.wait(10)
    lifecycle(node).promote(SHADOW, margins=PromotionMargins(), reason="better")
    switch = threading.Thread(target=current.refresh)
    switch.start()
    time.sleep(0.3)
    assert switch.is_alive() and node.running_models["live"] == LIVE  # still the old model
    release.set()
    flight.join(10)
    switch.join(10)
    assert node.running_models["live"] == SHADOW


def test_a_model_that_cannot_load_keeps_the_running_one(node: Node) -> None:
    lifecycle(node).promote(SHADOW, margins=PromotionMargins(), reason="better")
    (node.settings.models_dir / "demo" / "1.1.0" / "weights.pt").unlink()
    node.refresh_models()
    assert node.running_models["live"] == LIVE
