"""A destination PACS down for 5 minutes and for 2 hours: the real retry schedule walked
on a simulated clock, every attempt a real C-STORE association to a stopped, then
restarted, pynetdicom SCP (bench/destination_down.py prints the same figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.destination_down import Scenario, run_scenario
from node.config import Destination

pytestmark = pytest.mark.slow

DEFAULTS = Destination(name="d", url="http://127.0.0.1/")


def test_with_five_attempts_an_outage_ends_in_a_dead_letter_an_operator_resends(
    tmp_path: Path,
) -> None:
    scenario = run_scenario(Scenario(300.0, 5, DEFAULTS.backoff_seconds, 600.0), tmp_path)
    assert [t for t, _state in scenario.attempts] == [0, 5, 15, 35, 75]
    assert scenario.ended == "dead_letter"
    assert scenario.gauge.endswith('state="dead_letter"} 1.0')
    assert scenario.resent.startswith("delivered") and scenario.received == 2


def test_the_default_attempts_ride_out_two_hours_and_deliver_after_recovery(
    tmp_path: Path,
) -> None:
    scenario = run_scenario(
        Scenario(7200.0, DEFAULTS.max_attempts, DEFAULTS.backoff_seconds, 600.0), tmp_path
    )
    assert scenario.ended == "delivered" and scenario.received == 2
    last = scenario.attempts[-1][0]
    assert 7200 <= last <= 7200 + 600  # within one capped backoff of the recovery
    assert all(state == "retry" for _t, state in scenario.attempts[:-1])
