"""``mammo-node doctor``: is everything the node needs in place? One line per check."""

from __future__ import annotations

import argparse

from node.cli.settings import add_settings_options, running_node, settings_from
from node.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check configuration, ports, Orthanc, DICOMweb, database, models, destinations, "
        "disk and clock",
        description="One line per check (OK, WARN or FAIL), for the node running with the data "
        "folder (found through its node.json), or for one about to start there. Exit 1 when "
        "a check fails, 2 when the configuration itself is invalid.",
    )
    add_settings_options(doctor, "data_dir", "models_dir")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from node.runtime.checks import Check, run_checks

    try:
        settings = settings_from(args)
    except ConfigError as error:
        print(Check("configuration", "fail", str(error)).line())
        return 2
    source = getattr(args, "config", None) or "defaults and environment"
    print(Check("configuration", "ok", f"{source}; data folder {settings.data_dir}").line())
    failed = False
    for check in run_checks(settings, running_node(settings)):
        print(check.line(), flush=True)
        failed |= check.status == "fail"
    return 1 if failed else 0
