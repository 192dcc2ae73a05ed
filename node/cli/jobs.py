"""``mammo-node jobs``: the job table, from the running node's API (or, said so, from the
database a stopped node left)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from node.cli.settings import add_settings_options, running_node, settings_from
from node.config import Settings
from node.errors import NotFound
from node.jobs.states import JobState


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add jobs to the CLI's subcommands."""
    jobs = commands.add_parser(
        "jobs",
        help="list jobs, or show one job's history (from the running node)",
        description="Asks the running node's API (found through node.json in the data "
        "folder); when no node runs there, reads that folder's job database and says so.",
    )
    jobs.add_argument("job_id", nargs="?", type=int, metavar="JOB_ID", help="one job's details")
    add_settings_options(jobs, "data_dir")
    jobs.add_argument(
        "--state",
        choices=[state.value for state in JobState],
        metavar="STATE",
        help="only jobs in this state: " + ", ".join(state.value for state in JobState),
    )
    jobs.set_defaults(handler=cmd_jobs)


def cmd_jobs(args: argparse.Namespace) -> int:
    """From the running node's API; from the job database, said so, when none runs."""
    from node.cli.review import warn_if_synthetic
    from node.models.lifecycle import live_model_ref

    settings = settings_from(args)
    warn_if_synthetic(settings.models_dir, live_model_ref(settings.models_dir, settings.model))
    running = running_node(settings)
    if running is not None:
        from node.cli.client import NodeClient

        with NodeClient(running) as client:
            if args.job_id is not None:
                print(json.dumps(client.get(f"/api/v1/jobs/{args.job_id}"), indent=2))
                return 0
            _print_jobs(client.get("/api/v1/jobs", state=args.state, limit=1000))
        return 0
    return _jobs_from_database(args, settings)


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        score = (job.get("result") or {}).get("score")
        print(
            f"{job['id']:6d}  {job['state']:10s}  attempts={job['attempts']}  score={score}  "
            f"{job['study_instance_uid']}  {job.get('last_error') or ''}"
        )


def _jobs_from_database(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from node.db import create_engine
    from node.jobs.store import JobStore

    url = settings.effective_database_url
    if not settings.database_url and not (settings.data_dir / "jobs.sqlite").exists():
        raise NotFound(
            f"no node runs with data folder {settings.data_dir} and it has no job database; "
            "give the node's --data-dir (or MAMMO_NODE_DATA_DIR)"
        )
    print(
        f"mammo-node: no node runs with data folder {settings.data_dir}; "
        "showing its job database as the last node left it",
        file=sys.stderr,
    )
    store = JobStore(create_engine(url))
    if args.job_id is not None:
        job = store.get(args.job_id)
        view = asdict(job) | {
            "state": job.state.value,
            "history": [asdict(e) for e in store.history(job.id)],
        }
        print(json.dumps(view, indent=2, default=str))
        return 0
    state = JobState(args.state) if args.state else None
    _print_jobs([asdict(job) | {"state": job.state.value} for job in store.list_jobs(state=state)])
    return 0
