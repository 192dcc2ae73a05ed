"""The ``mammo-node`` command line: builds the parser from each command module and
dispatches, turning the node's own errors into a message and an exit code in one place."""

from __future__ import annotations

import argparse
import sys

from node import __version__
from node.cli.node_commands import NOT_FOR_CLINICAL_USE
from node.cli.node_commands import add_parser as add_node_commands
from node.errors import ConfigError, MammoNodeError, NotFound


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammo-node",
        description="AI node for screening mammography: Orthanc receives exams, a MONAI model "
        "analyses them, DICOM SEG + SR go back to PACS. " + NOT_FOR_CLINICAL_USE,
    )
    parser.add_argument("--version", action="version", version=f"mammo-node {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_node_commands(commands)  # up, serve, predict, send, synth, jobs
    try:
        from node.cli.variants import add_parser as add_variants
    except ImportError:  # pragma: no cover - the variants package is optional
        pass
    else:
        add_variants(commands)
    from node.cli.datasets import add_parser as add_data
    from node.cli.evaluation import add_parser as add_evaluate
    from node.cli.training import add_parser as add_train

    add_data(commands)
    add_train(commands)
    add_evaluate(commands)
    from node.cli.review import add_parser as add_review

    add_review(commands)  # models list|promote|rollback|shadow, feedback
    from node.cli.destinations import add_parser as add_echo

    add_echo(commands)  # echo DEST
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. The node's own errors print one line: a configuration error exits 2,
    anything else it raised on purpose 1; every other exception is a bug and shows its
    traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        print(f"mammo-node: configuration error: {error}", file=sys.stderr)
        return 2
    except NotFound as error:
        print(f"mammo-node: not found: {error}", file=sys.stderr)
        return 1
    except MammoNodeError as error:
        print(f"mammo-node: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
