"""The one settings loader of the command line: every command that reads the node's settings
adds its options with ``add_settings_options`` and builds them with ``settings_from``.

Settings come from the YAML file (``--config`` or MAMMO_NODE_CONFIG), then the environment,
then the options a command offers, in that order (``node.config.load_settings``). When a node
runs with the same data folder, the ports, URLs and credentials it wrote into its runtime
file (``node.runtime.runfile``) replace those of the file and the environment, so that every
command reaches that node; an option given on the command line still wins.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from node.config import Settings, load_settings
from node.errors import ConfigError
from node.runtime.runfile import RUNTIME_SETTINGS, RunningNode, read_runtime_file

# The settings a command line may override: the option, its type and its help.
OPTIONS: dict[str, tuple[str, type, str]] = {
    "data_dir": (
        "--data-dir",
        Path,
        "where Orthanc's storage, the job database and logs go (default ./var)",
    ),
    "models_dir": ("--models-dir", Path, "the models folder (default ./models)"),
    "dicom_port": ("--dicom-port", int, "Orthanc's DICOM port (default 4242)"),
    "http_port": ("--http-port", int, "Orthanc's HTTP/DICOMweb port (default 8042)"),
    "api_port": ("--api-port", int, "the node's API and /metrics port (default 8000)"),
    "viewer_port": (
        "--viewer-port",
        int,
        "the OHIF viewer's port, when `make viewer` installed it (default 3000; 0: off)",
    ),
    "aet": ("--aet", str, "the node's AE title (default MAMMONODE)"),
    "model": (
        "--model",
        str,
        "model id or id/version in the models folder (default: the registry's live model)",
    ),
    "workers": ("--workers", int, "inference workers in this process (default 1)"),
}

# What ``up`` and ``serve`` offer: the running node's own settings.
NODE_OPTIONS = (
    "data_dir",
    "dicom_port",
    "http_port",
    "api_port",
    "viewer_port",
    "aet",
    "model",
    "workers",
)


def add_settings_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--config`` and the overrides ``names`` (keys of ``OPTIONS``) on one command."""
    parser.add_argument("--config", type=Path, help="YAML settings file (also MAMMO_NODE_CONFIG)")
    for name in names:
        flag, kind, help_text = OPTIONS[name]
        parser.add_argument(flag, type=kind, help=help_text)
    parser.set_defaults(settings_overrides=names)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names: tuple[str, ...] = getattr(args, "settings_overrides", ())
    return {name: getattr(args, name) for name in names}


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a command whose parser ``add_settings_options`` prepared, following
    the node that runs with the same data folder, when one does."""
    overrides = _overrides(args)
    settings = load_settings(getattr(args, "config", None), overrides=overrides)
    running = read_runtime_file(settings.data_dir)
    if running is None:
        return settings
    followed = {
        name: running.settings[name]
        for name in RUNTIME_SETTINGS
        if name in running.settings and overrides.get(name) is None
    }
    if "models_dir" in followed:
        followed["models_dir"] = Path(followed["models_dir"])
    return replace(settings, **followed)


def node_settings_from(args: argparse.Namespace, *, embedded: bool = True) -> Settings:
    """The settings of ``up`` and ``serve``: refused while a node runs with the same folder,
    except ``serve`` (``embedded=False``) on a PostgreSQL job store: its processes share the
    folder as the Helm chart's pods share their volume (the result outbox), and the store
    keeps them apart (leases). An SQLite store, or an embedded Orthanc, is one node's."""
    settings = load_settings(getattr(args, "config", None), overrides=_overrides(args))
    running = read_runtime_file(settings.data_dir)
    shared = not embedded and settings.effective_database_url.startswith("postgresql")
    if running is not None and not shared:
        raise ConfigError(
            f"a node already runs with data folder {settings.data_dir} (pid {running.pid}, "
            f"API {running.api_url}); stop it or choose another --data-dir"
        )
    return settings


def running_node(settings: Settings) -> RunningNode | None:
    """The node running with ``settings.data_dir``, if any."""
    return read_runtime_file(settings.data_dir)
