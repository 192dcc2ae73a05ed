"""The scale-out bench in small (bench/scale_out.py runs 40 exams on 1, 2 and 3 processes):
two ``mammo-node serve`` worker processes and the API process on one PostgreSQL job store,
Orthanc on PostgreSQL, exams sent over several associations; one worker process SIGKILLed
mid-job. Nothing lost, nothing duplicated, and the killed process's job finished once, by
the other process. No timing is asserted: the figures are the bench's."""

from __future__ import annotations

import pytest

from bench.scale_out import parse_args, run_scale_out
from bench.scale_out_cluster import PLUGIN_DIR, POSTGRESQL_PLUGINS
from bench.scale_out_report import print_table
from tests.harness import SYNTHETIC_MODEL, needs_orthanc

needs_orthanc_postgresql = pytest.mark.skipif(
    not all((PLUGIN_DIR / name).exists() for name in POSTGRESQL_PLUGINS),
    reason="orthanc-postgresql is not installed (make test installs it)",
)


@pytest.mark.slow
@needs_orthanc
@needs_orthanc_postgresql
@pytest.mark.timeout(900)
def test_two_worker_processes_lose_nothing_and_finish_a_killed_job_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_args(
        [
            "--exams",
            "4",
            "--workers",
            "2",
            "--kill-workers",
            "2",
            "--kill-exams",
            "4",
            "--model",
            SYNTHETIC_MODEL,
            "--lease-seconds",
            "8",
            "--associations",
            "2",
            "--timeout",
            "600",
        ]
    )
    reports = run_scale_out(args)
    print_table(reports)
    assert [(r.label, r.workers) for r in reports] == [("n2", 2), ("n2_kill", 2)]
    for report in reports:
        assert report.problems == []
        assert (report.done, report.lost, report.duplicated, report.failed) == (4, 0, 0, 0)
        assert report.exams_per_hour > 0
        assert set(report.stage_s) >= {"fetching", "inferring", "writing", "publishing"}
        assert report.peak_rss_mb["worker (max)"] > 0
    assert reports[0].kill is None
    kill = reports[1].kill
    assert kill is not None
    assert kill.state in {"fetching", "inferring", "writing", "publishing"}
    assert kill.finished_by_other
    assert kill.released_after_s >= 0 and kill.done_after_s >= kill.released_after_s
    assert kill.result_sets == 1  # Orthanc holds exactly the outputs the job recorded
    assert kill.attempts >= 2  # the killed attempt, then another process's
    table = capsys.readouterr().out
    assert "exams/hour" in table and "n2_kill" in table


def test_the_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for option in (
        "--exams",
        "--workers",
        "--kill-workers",
        "--kill-exams",
        "--model",
        "--threads",
        "--lease-seconds",
        "--associations",
        "--rows",
        "--columns",
        "--timeout",
    ):
        assert option in text


def test_a_kill_run_needs_a_second_worker_process() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--kill-workers", "1"])
    assert parse_args(["--kill-workers", "0"]).kill_workers == 0
