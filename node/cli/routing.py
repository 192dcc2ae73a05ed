"""``mammo-node routing test``: which routing rule routes or ignores each instance, and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node.cli.settings import add_settings_options, settings_from
from node.errors import ConfigError, NotFound


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    routing = commands.add_parser(
        "routing",
        help="test the routing rules on DICOM files or a study in Orthanc",
        description="The node analyses an instance when its SOP Class, Modality and "
        "Presentation Intent Type match the setting `routing` and the node did not write it.",
    )
    actions = routing.add_subparsers(dest="routing_command", required=True, metavar="ACTION")
    tester = actions.add_parser(
        "test",
        help="say which rule routes or ignores each instance, and why (no model is run)",
        description="One line per instance: ROUTED or IGNORED, the rule, the reason. Give "
        "files or folders, or --study UID for a study stored in the node's Orthanc.",
    )
    tester.add_argument(
        "files", nargs="*", type=Path, metavar="FILES", help="DICOM files or folders"
    )
    tester.add_argument(
        "--study", metavar="UID", help="a StudyInstanceUID stored in the node's Orthanc"
    )
    tester.add_argument("--json", action="store_true", help="one JSON object per instance")
    add_settings_options(tester, "data_dir")
    tester.set_defaults(handler=cmd_routing_test)


def cmd_routing_test(args: argparse.Namespace) -> int:
    from node.ingest.rule_tester import try_files, try_study
    from node.net.orthanc_rest import OrthancRest

    if bool(args.files) == bool(args.study):
        raise ConfigError("give DICOM FILES or --study UID (one of the two)")
    settings = settings_from(args).with_secrets()
    if args.study:
        orthanc = OrthancRest(
            settings.orthanc_base_url, settings.http_user, settings.http_password, timeout=10.0
        )
        try:
            trials = try_study(orthanc, args.study, settings.routing)
        finally:
            orthanc.close()
        if not trials:
            raise NotFound(f"Orthanc at {settings.orthanc_base_url} has no study {args.study}")
    else:
        trials = try_files(args.files, settings.routing)
    for trial in trials:
        if args.json:
            print(json.dumps(trial.view()))
            continue
        decision = trial.decision
        print(
            f"{decision.decision.upper():8s} {decision.code:20s} {trial.source}: {decision.reason}"
        )
    return 0
