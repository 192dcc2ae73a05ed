"""The command line's one settings loader and its one place for errors: the node's own
errors become a line and an exit code, a programming error keeps its traceback."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from node.cli.settings import add_settings_options, settings_from
from node.errors import NotFound

cli = importlib.import_module("node.cli.main")  # the package's ``main`` is the function


def test_settings_come_from_the_file_then_the_options(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(f"data_dir: {tmp_path / 'from-file'}\naet: FROMFILE\n")
    parser = argparse.ArgumentParser()
    add_settings_options(parser, "data_dir", "models_dir")
    args = parser.parse_args(["--config", str(config), "--models-dir", str(tmp_path / "m")])
    settings = settings_from(args)
    assert settings.data_dir == tmp_path / "from-file"  # not overridden: the file's
    assert settings.models_dir == tmp_path / "m"
    assert settings.aet == "FROMFILE"


def test_only_the_options_a_command_offers_override_settings(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_settings_options(parser)
    parser.add_argument("--model")  # a command's own --model (evaluate's), not the setting
    settings = settings_from(parser.parse_args(["--model", "other/1.0.0"]))
    assert settings.model == ""


def raising(error: Exception) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()

    def handler(_args: argparse.Namespace) -> int:
        raise error

    parser.set_defaults(handler=handler)
    return parser


def test_not_found_is_a_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: raising(NotFound("no job 9")))
    assert cli.main([]) == 1
    assert capsys.readouterr().err == "mammo-node: not found: no job 9\n"


def test_a_programming_key_error_is_not_disguised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: raising(KeyError("score")))
    with pytest.raises(KeyError, match="score"):
        cli.main([])
