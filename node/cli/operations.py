"""``mammo-node deliveries | resend | requeue``: the dead letters and the second chances, done
through the running node's API (so the node's own retry logic and history record them)."""

from __future__ import annotations

import argparse
import json

from node.cli.client import NodeClient
from node.cli.settings import add_settings_options, running_node, settings_from
from node.config import Settings
from node.errors import PeerUnavailable
from node.runtime.runfile import RunningNode

DELIVERY_STATES = ("pending", "retry", "delivered", "dead_letter")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add deliveries, resend and requeue to the CLI's subcommands."""
    deliveries = commands.add_parser(
        "deliveries",
        help="list deliveries to destinations, newest first (--dead: the dead letters)",
        description="What each destination got of each job, from the running node's API. "
        "A dead letter has used all its attempts: `mammo-node resend JOB_ID DEST` sends it "
        "again.",
    )
    which = deliveries.add_mutually_exclusive_group()
    which.add_argument("--state", choices=DELIVERY_STATES, help="only deliveries in this state")
    which.add_argument(
        "--dead", action="store_true", help="only the dead letters (--state dead_letter)"
    )
    deliveries.add_argument("--limit", type=int, default=100, help="at most this many deliveries")
    add_settings_options(deliveries, "data_dir")
    deliveries.set_defaults(handler=cmd_deliveries)

    resend = commands.add_parser(
        "resend",
        help="send a dead-lettered delivery again (fresh attempts, from the outbox)",
    )
    resend.add_argument("job_id", type=int, metavar="JOB_ID", help="the job")
    resend.add_argument("destination", metavar="DEST", help="the destination's name")
    add_settings_options(resend, "data_dir")
    resend.set_defaults(handler=cmd_resend)

    requeue = commands.add_parser(
        "requeue", help="queue a failed job again (its history records the re-queue)"
    )
    requeue.add_argument("job_id", type=int, metavar="JOB_ID", help="the failed job")
    add_settings_options(requeue, "data_dir")
    requeue.set_defaults(handler=cmd_requeue)


def node_of(settings: Settings) -> RunningNode:
    """The running node, or PeerUnavailable saying how to reach one."""
    running = running_node(settings)
    if running is None:
        raise PeerUnavailable(
            f"no node runs with data folder {settings.data_dir} (no node.json there): start "
            "it with `mammo-node up`, or give its --data-dir (or MAMMO_NODE_DATA_DIR)"
        )
    return running


def cmd_deliveries(args: argparse.Namespace) -> int:
    state = "dead_letter" if args.dead else args.state
    with NodeClient(node_of(settings_from(args))) as client:
        rows = client.get("/api/v1/deliveries", state=state, limit=args.limit)
    for row in rows:
        print(json.dumps(row, default=str))
    return 0


def cmd_resend(args: argparse.Namespace) -> int:
    with NodeClient(node_of(settings_from(args))) as client:
        view = client.post(f"/api/v1/jobs/{args.job_id}/deliveries/{args.destination}/resend")
    print(json.dumps(view, default=str))
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    with NodeClient(node_of(settings_from(args))) as client:
        job = client.post(f"/api/v1/jobs/{args.job_id}/requeue")
    print(f"job {job['id']} is {job['state']} again (attempts so far: {job['attempts']})")
    return 0
