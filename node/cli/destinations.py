"""``mammo-node echo DEST``: test one configured destination before results depend on it."""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.settings import add_settings_options, settings_from


def add_parser(commands: Any) -> None:
    echo = commands.add_parser(
        "echo",
        help="test a destination: C-ECHO (DIMSE) or a QIDO-RS query (DICOMweb)",
        description="Checks that a configured destination answers, with the cause when not "
        "(connection refused, association rejected, authentication failed). Exit 0 when it "
        "answers, 1 when not, 2 for an unknown destination.",
    )
    echo.add_argument("destination", metavar="DEST", help="a destination name from the config")
    add_settings_options(echo, "data_dir")
    echo.set_defaults(handler=cmd_echo)


def cmd_echo(args: argparse.Namespace) -> int:
    from node.delivery.echo import echo_destination

    settings = settings_from(args).with_secrets()
    destination = settings.destination(args.destination)  # ConfigError lists the known ones
    print(f"{destination.name}: {echo_destination(destination)}")
    return 0
