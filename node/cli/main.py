"""The ``mammo-node`` command line: builds the parser from each command module and
dispatches, turning the node's own errors into a message and an exit code in one place."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Iterator

from node import __version__
from node.cli.node_commands import NOT_FOR_CLINICAL_USE
from node.cli.node_commands import add_parser as add_node_commands
from node.errors import ConfigError, MammoNodeError, NotFound


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default when it has one its help does not already name (so never
    "(default: the node's) (default: None)")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], "")
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from all_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammo-node",
        description="AI node for screening mammography: Orthanc receives exams, a MONAI model "
        "analyses them, DICOM SEG + SR go back to PACS. " + NOT_FOR_CLINICAL_USE,
    )
    parser.add_argument("--version", action="version", version=f"mammo-node {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show libraries' log lines and the traceback of an error",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_node_commands(commands)  # up, serve, predict, send, synth
    from node.cli.jobs import add_parser as add_jobs

    add_jobs(commands)  # jobs
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
    from node.cli.operations import add_parser as add_operations

    add_operations(commands)  # deliveries, resend, requeue
    from node.cli.doctor import add_parser as add_doctor

    add_doctor(commands)  # doctor
    from node.cli.routing import add_parser as add_routing

    add_routing(commands)  # routing test
    for each in all_parsers(parser):
        each.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. The node's own errors print one line: a configuration error exits 2,
    anything else it raised on purpose 1, a file or socket the system refused 1 too;
    ``--debug`` adds the traceback. Every other exception is a bug and shows its
    traceback."""
    from node.observability.logs import configure_command_logging

    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    configure_command_logging(debug)
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        return _fail(f"configuration error: {error}", 2, debug)
    except NotFound as error:
        return _fail(f"not found: {error}", 1, debug)
    except MammoNodeError as error:
        return _fail(str(error), 1, debug)
    except OSError as error:  # a file, port or disk the system refused: not a bug
        return _fail(str(error), 1, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug)
    return code


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"mammo-node: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
