"""The operator's command line: help for every option, one clear line per error, no silent
hang on a refused or silent DICOM peer, and every command finds the running node through
the runtime file in its data folder."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli.settings import add_settings_options, node_settings_from, settings_from
from node.config import load_settings
from node.errors import ConfigError
from node.observability.logs import configure_logging
from node.runtime.runfile import read_runtime_file, remove_runtime_file, write_runtime_file
from node.synthetic.dicom import write_exam
from tests.harness import free_port

cli = importlib.import_module("node.cli.main")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAMMO_NODE_")}
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean | (env or {}),
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    return result.stderr


# -- help ---------------------------------------------------------------------------------


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{parser.prog} {action.dest}"
        for parser in cli.all_parsers(cli.build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert missing == []


def test_help_names_a_default_once_and_never_none(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["evaluate"], ["data", "import"], ["send"], ["serve"]):
        with pytest.raises(SystemExit):
            cli.main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text
        assert re.search(r"\(default[^)]*\) \(default", text) is None
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "MAMMO_NODE_ORTHANC_URL" in " ".join(capsys.readouterr().out.split())


# -- one clear line per error ------------------------------------------------------------


def test_an_unknown_job_state_names_the_known_ones() -> None:
    stderr = one_line_error(run_cli("jobs", "--state", "bogus"))
    assert "invalid choice: 'bogus'" in stderr and "failed" in stderr


def test_jobs_without_a_node_or_database_says_where_it_looked(tmp_path: Path) -> None:
    stderr = one_line_error(run_cli("jobs", "--data-dir", str(tmp_path / "nothing")))
    assert "no node runs with data folder" in stderr and "MAMMO_NODE_DATA_DIR" in stderr


def test_predict_on_a_missing_file_exits_non_zero(tmp_path: Path) -> None:
    result = run_cli("predict", str(tmp_path / "missing.png"))
    assert result.returncode == 1
    assert "error" in json.loads(result.stdout)
    assert "could not be analysed" in one_line_error(result)


def test_predict_warns_that_the_live_model_is_synthetic_only(tmp_path: Path) -> None:
    png = tmp_path / "missing.png"
    result = run_cli("predict", "--model", "synthetic-unet/0.1.0", str(png))
    assert "trained on synthetic images only" in result.stderr


def test_feedback_complains_about_the_birads_value() -> None:
    stderr = one_line_error(run_cli("feedback", "3", "--birads", "9"))
    assert "birads must be a BI-RADS category 0-6, got 9" in stderr
    assert "--agree" not in stderr


def test_data_report_on_a_raw_folder_says_to_import_it(tmp_path: Path) -> None:
    stderr = one_line_error(run_cli("data", "report", str(tmp_path)))
    assert "not an imported dataset" in stderr and "mammo-node data import" in stderr


def test_debug_adds_the_traceback_of_an_error(tmp_path: Path) -> None:
    result = run_cli("--debug", "data", "report", str(tmp_path))
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_library_info_lines_are_off_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("fontTools.subset").info("maxp pruned")
    logging.getLogger("node.jobs").info("job done")
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["logger"] for line in lines] == ["node.jobs"]


# -- send never hangs silently -------------------------------------------------------------


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_send_to_a_closed_port_says_so(tmp_path: Path) -> None:
    files = write_exam(tmp_path / "exam", seed=3)[:1]
    stderr = one_line_error(
        run_cli("send", str(files[0]), "--port", str(free_port()), "--timeout", "2")
    )
    assert "connection refused" in stderr


def test_send_says_a_refusal_in_one_line(tmp_path: Path) -> None:
    files = write_exam(tmp_path / "exam", seed=3)[:1]
    result = run_cli("send", str(files[0]), "--port", str(free_port()), "--timeout", "2")
    lines = [line for line in result.stderr.splitlines() if not line.startswith("sending ")]
    assert len(lines) == 1 and lines[0].startswith("mammo-node: "), result.stderr


def test_send_to_a_silent_peer_ends_within_its_timeout(tmp_path: Path, silent_peer: int) -> None:
    files = write_exam(tmp_path / "exam", seed=3)[:1]
    started = time.monotonic()
    result = run_cli("send", str(files[0]), "--port", str(silent_peer), "--timeout", "1")
    assert time.monotonic() - started < 30
    assert "no association" in one_line_error(result)


def test_send_names_the_peers_reason_for_a_rejection(tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title="PACS2")
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        files = write_exam(tmp_path / "exam", seed=3)[:1]
        result = run_cli(
            "send", str(files[0]), "--port", str(port), "--called-aet", "WRONG", "--timeout", "5"
        )
    finally:
        server.shutdown()
    stderr = one_line_error(result)
    assert "rejected the association (Rejected Permanent" in stderr
    assert "Called AE title not recognised" in stderr


# -- one way to find the node -------------------------------------------------------------


def settings_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_settings_options(parser, "data_dir", "http_port")
    return parser


def test_commands_follow_the_node_running_with_their_data_folder(tmp_path: Path) -> None:
    node = load_settings(
        environ={},
        overrides={
            "data_dir": tmp_path,
            "http_port": 18042,
            "dicom_port": 14242,
            "http_password": "secret",
        },
    )
    path = write_runtime_file(node, viewer_url=None)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the generated secrets
    settings = settings_from(settings_parser().parse_args(["--data-dir", str(tmp_path)]))
    assert (settings.http_port, settings.dicom_port) == (18042, 14242)
    assert settings.http_password == "secret"
    assert settings.models_dir == node.models_dir.resolve()  # `models promote` edits its registry
    # An option on the command line still wins.
    args = settings_parser().parse_args(["--data-dir", str(tmp_path), "--http-port", "9000"])
    assert settings_from(args).http_port == 9000
    # A second node on the same folder is refused.
    with pytest.raises(ConfigError, match="already runs with data folder"):
        node_settings_from(settings_parser().parse_args(["--data-dir", str(tmp_path)]))
    remove_runtime_file(tmp_path)
    assert read_runtime_file(tmp_path) is None


def test_a_stale_runtime_file_is_ignored(tmp_path: Path) -> None:
    node = load_settings(environ={}, overrides={"data_dir": tmp_path, "http_port": 18042})
    path = write_runtime_file(node)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    raw = json.loads(path.read_text()) | {"pid": int(dead.stdout)}
    path.write_text(json.dumps(raw))
    assert read_runtime_file(tmp_path) is None
    settings = settings_from(settings_parser().parse_args(["--data-dir", str(tmp_path)]))
    assert settings.http_port == 8042


def test_a_runtime_file_naming_this_pid_that_this_process_did_not_write_is_stale(
    tmp_path: Path,
) -> None:
    """A container restarted on its volume runs its node as pid 1 again: the file its killed
    predecessor (pid 1 too) left must not make it refuse to start."""
    node = load_settings(environ={}, overrides={"data_dir": tmp_path, "http_port": 18042})
    raw = json.loads(write_runtime_file(node).read_text()) | {"pid": os.getpid()}
    other = tmp_path / "restarted"
    other.mkdir()
    (other / "node.json").write_text(json.dumps(raw | {"data_dir": str(other)}))
    assert read_runtime_file(other) is None
    assert node_settings_from(settings_parser().parse_args(["--data-dir", str(other)]))
    assert read_runtime_file(tmp_path) is not None  # the one this process wrote is live


def test_serve_processes_on_a_postgresql_job_store_share_their_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's node pods share one volume (the outbox): ``serve`` on PostgreSQL starts
    beside a running node; ``up`` and an SQLite store in the folder stay one node's."""
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = write_runtime_file(load_settings(environ={}, overrides={"data_dir": tmp_path}))
        path.write_text(json.dumps(json.loads(path.read_text()) | {"pid": sibling.pid}))
        args = settings_parser().parse_args(["--data-dir", str(tmp_path)])
        with pytest.raises(ConfigError, match="already runs with data folder"):
            node_settings_from(args, embedded=False)  # SQLite: the folder's own store
        monkeypatch.setenv("MAMMO_NODE_DATABASE_URL", "postgresql+psycopg://mammo@127.0.0.1/jobs")
        with pytest.raises(ConfigError, match="already runs with data folder"):
            node_settings_from(args)  # up: its Orthanc keeps its files in the folder
        assert node_settings_from(args, embedded=False).data_dir == tmp_path
    finally:
        sibling.kill()
        sibling.wait(10)


def test_operations_without_a_running_node_say_how_to_find_it(tmp_path: Path) -> None:
    for command in (["deliveries", "--dead"], ["resend", "1", "orthanc"], ["requeue", "1"]):
        stderr = one_line_error(run_cli(*command, "--data-dir", str(tmp_path)))
        assert "no node runs with data folder" in stderr
