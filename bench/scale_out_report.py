"""What the scale-out bench (bench/scale_out.py) reports of each run, and its side-by-side
table: one column per run, one row per figure."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CORES = os.cpu_count() or 1
STAGES = ("queued", "fetching", "inferring", "writing", "publishing", "retry")


@dataclass
class KillReport:
    job_id: int
    state: str  # the stage the job was in when its process was killed
    released_after_s: float  # kill -> another process leased the job
    done_after_s: float  # kill -> the job done
    finished_by_other: bool
    attempts: int
    result_sets: int  # of that exam in Orthanc: 1 is right


@dataclass
class RunReport:
    label: str
    workers: int
    exams: int
    done: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # median per job
    end_to_end_s: float = 0.0  # median, first C-STORE of the exam to its job done
    cpu_per_exam: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0  # share of all cores busy during the run, anyone's work
    ours_busy: float = 0.0  # share of all cores our processes used
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average at start and end
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    kill: KillReport | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def exams_per_hour(self) -> float:
        return 3600.0 * self.done / self.wall_s if self.wall_s else 0.0

    @property
    def ceiling_per_hour(self) -> float:
        """Exams/hour if every core of the machine were these processes' alone: the cores'
        seconds over the CPU seconds an exam costs (all processes). Not measured: computed."""
        per_exam = sum(self.cpu_per_exam.values())
        return 3600.0 * CORES / per_exam if per_exam else 0.0


def print_table(reports: Sequence[RunReport], out: Callable[[str], None] = print) -> None:
    rows: list[tuple[str, Callable[[RunReport], str]]] = [
        ("worker processes", lambda r: str(r.workers)),
        ("exams sent / done", lambda r: f"{r.exams} / {r.done}"),
        ("lost", lambda r: str(r.lost)),
        ("duplicated", lambda r: str(r.duplicated)),
        ("failed", lambda r: str(r.failed)),
        ("wall s (1st C-STORE..last done)", lambda r: f"{r.wall_s:.0f}"),
        ("exams/hour", lambda r: f"{r.exams_per_hour:.0f}"),
        ("median s to done (from 1st send)", lambda r: f"{r.end_to_end_s:.0f}"),
        *[
            (f"  median s {stage}", lambda r, s=stage: f"{r.stage_s.get(s, 0.0):.2f}")
            for stage in STAGES
        ],
        *[
            (f"CPU s/exam {part}", lambda r, p=part: f"{r.cpu_per_exam.get(p, 0.0):.2f}")
            for part in ("workers", "api", "orthanc", "postgresql")
        ],
        (f"ceiling exams/hour ({CORES} cores ours)", lambda r: f"{r.ceiling_per_hour:.0f}"),
        ("machine CPU busy (all users)", lambda r: f"{100 * r.machine_busy:.0f}%"),
        ("  of which these processes", lambda r: f"{100 * r.ours_busy:.0f}%"),
        ("load average start / end", lambda r: f"{r.load[0]:.1f} / {r.load[1]:.1f}"),
        *[
            (f"peak RSS MB {part}", lambda r, p=part: f"{r.peak_rss_mb.get(p, 0.0):.0f}")
            for part in ("api", "worker (max)", "orthanc")
        ],
        ("killed in stage", lambda r: r.kill.state if r.kill else "-"),
        ("  re-leased after s", lambda r: f"{r.kill.released_after_s:.1f}" if r.kill else "-"),
        ("  done after s", lambda r: f"{r.kill.done_after_s:.1f}" if r.kill else "-"),
        ("  finished by another", lambda r: str(r.kill.finished_by_other) if r.kill else "-"),
        ("  result sets in Orthanc", lambda r: str(r.kill.result_sets) if r.kill else "-"),
    ]
    width = 34
    out(f"{CORES} cores; figures under whatever else runs on the machine (see load average)")
    out(f"{'':<{width}}" + "".join(f"{r.label:>12}" for r in reports))
    for title, cell in rows:
        out(f"{title:<{width}}" + "".join(f"{cell(r):>12}" for r in reports))
    for report in reports:
        for problem in report.problems:
            out(f"{report.label}: {problem}")
