"""``mammo-node echo DEST``: test one configured destination before results depend on it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.config import load_settings


def add_parser(commands: Any) -> None:
    echo = commands.add_parser(
        "echo",
        help="test a destination: C-ECHO (DIMSE) or a QIDO-RS query (DICOMweb)",
        description="Checks that a configured destination answers, with the cause when not "
        "(connection refused, association rejected, authentication failed). Exit 0 when it "
        "answers, 1 when not, 2 for an unknown destination.",
    )
    echo.add_argument("destination", metavar="DEST", help="a destination name from the config")
    echo.add_argument("--config", type=Path, help="YAML settings file (also MAMMO_NODE_CONFIG)")
    echo.set_defaults(handler=cmd_echo)


def cmd_echo(args: argparse.Namespace) -> int:
    from node.delivery.echo import echo_destination

    settings = load_settings(args.config).with_secrets()
    destination = settings.destination(args.destination)  # ConfigError lists the known ones
    print(f"{destination.name}: {echo_destination(destination)}")
    return 0
