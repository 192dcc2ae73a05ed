"""The fuzz figure in small: every kind of broken input once, by C-STORE and STOW-RS, into a
real Orthanc + node (bench/fuzz.py sends 1000+). No crash, no hang, every input with a
recorded outcome, no job retried as if the fault were transient, and a good exam after."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fuzz import print_report, run_fuzz
from node.synthetic.hostile import mutations
from tests.harness import needs_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]


def test_every_kind_of_broken_input_ends_with_a_recorded_outcome(tmp_path: Path) -> None:
    report = run_fuzz(2 * len(mutations()), seed=11, budget=240.0, data_dir=tmp_path)
    print_report(report)
    assert report.crashes == 0 and report.unexpected_errors == 0
    assert report.hangs == 0
    assert report.without_outcome == []
    assert report.retried == 0
    assert report.good_state == "done"
    # A bomb is refused undecoded, so the node stays far below the 10.5 GB seen before.
    assert report.node_peak_rss_mb < 4096
