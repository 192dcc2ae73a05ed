"""The JSON log formatter, fast: one JSON object per record whatever the values hold, and
no quoted value of a library's message or a warning survives."""

from __future__ import annotations

import json
import logging
import sys

from node.observability.logs import JsonFormatter, _show_warning, scrub

HOSTILE = 'Doe\r\n{"level":"error","msg":"forged"}\x1b[31m\x00' + "R" * 10_000


def formatted(name: str, msg: str, *args: object, **extra: object) -> str:
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return JsonFormatter().format(record)


def test_every_record_is_one_line_of_json_whatever_its_values() -> None:
    line = formatted("node.jobs", "exam %s", HOSTILE, job_id=3, note=HOSTILE)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x00" not in line
    entry = json.loads(line)
    assert entry["job_id"] == 3 and len(entry["msg"]) < 2100 and len(entry["note"]) < 2100


def test_a_librarys_arguments_and_quoted_values_are_dropped() -> None:
    entry = json.loads(formatted("pydicom", "Invalid value for VR %s: %r", "PN", HOSTILE))
    assert entry["msg"] == "Invalid value for VR <redacted>: <redacted>"
    quoted = json.loads(formatted("highdicom", f'The string "{HOSTILE}" is unlikely'))
    assert quoted["msg"] == 'The string "<redacted>" is unlikely'


def test_a_quote_inside_a_value_does_not_end_the_redaction() -> None:
    assert scrub("value \"O'Brien\" and 'Doe\"X'.") == "value \"<redacted>'."


def test_a_warning_is_logged_scrubbed(caplog: object) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("py.warnings").addHandler(handler)
    try:
        _show_warning(UserWarning(f'The string "{HOSTILE}"'), UserWarning, sys.argv[0], 7)
    finally:
        logging.getLogger("py.warnings").removeHandler(handler)
    entry = json.loads(JsonFormatter().format(records[0]))
    assert entry["msg"] == 'The string "<redacted>"' and entry["category"] == "UserWarning"


def test_a_quote_never_closed_hides_the_rest() -> None:
    assert scrub("Invalid value for VR PN: 'Doe^Jane") == "Invalid value for VR PN: '<redacted>"
