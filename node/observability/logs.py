"""Structured (JSON) logs. Callers pass identifiers as ``extra``; patient data never goes in.

Every line the node writes to its log is exactly one JSON object: control characters
(newlines, ANSI escapes, NUL) are escaped by the encoder and long values truncated, so
nothing a sender puts in a DICOM name can start a line of its own. Libraries do not follow
the node's rule (highdicom warns with the Patient's Name it was given, pydicom logs the
``repr`` of invalid values), so their records and Python warnings keep their message
template and lose every quoted value and argument.

Libraries log their own chatter at INFO (fontTools writes a line per font subset of every
PDF report: 91% of the node's stderr before this was quieted); only their warnings show,
unless the operator asks for ``--debug``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
OWN_LOGGERS = ("node", "__main__")
MAX_VALUE_CHARS = 2000  # a longer string is cut, saying how long it was
REDACTED = "<redacted>"
# A quoted value (repr() of a str or bytes, or highdicom's "..."): from the first quote of
# either kind to the last, so a quote inside the value cannot end the redaction early; a
# quote never closed hides the rest of the text.
_QUOTED = re.compile(r"""(["']).*(["'])""", re.DOTALL)
_UNCLOSED = re.compile(r"""(["']).*""", re.DOTALL)
_PERCENT_ARG = re.compile(r"%(\([^)]*\))?[#0 +-]*\d*(\.\d+)?[diouxXeEfFgGcrsa]")


def scrub(text: str) -> str:
    """``text`` without the quoted values in it."""
    text, pairs = _QUOTED.subn(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)
    if pairs:
        return text
    return _UNCLOSED.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def truncate(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _is_own(record: logging.LogRecord) -> bool:
    return record.name in OWN_LOGGERS or record.name.startswith("node.")


def _message(record: logging.LogRecord) -> str:
    """The node's own messages as written (their arguments are ids and error texts, scrubbed
    of quoted values); a library's: its template, each argument replaced."""
    if _is_own(record):
        return scrub(record.getMessage())
    template = str(record.msg)
    if record.args:
        template = _PERCENT_ARG.sub(REDACTED, template)
    return scrub(template)


def _value(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return truncate(scrub(str(value)))


def _exception(exc_info: Any) -> str:
    """The traceback's frames as they are; the exception's message (which may quote a
    value, over several lines) scrubbed as a whole."""
    kind, error, trace = exc_info
    if kind is None:
        return ""
    frames = "".join(traceback.format_tb(trace))
    return frames + scrub("".join(traceback.format_exception_only(kind, error)))


#: Loggers of libraries whose INFO lines tell an operator nothing.
NOISY_LOGGERS = (
    "fontTools",
    "fpdf",
    "matplotlib",
    "PIL",
    "httpx",
    "httpcore",
    "urllib3",
    "uvicorn.access",
    "uvicorn.error",
    "asyncio",
    "multipart",
    "pynetdicom",
    "highdicom",
    "monai",
    "torch",
    "alembic",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": truncate(_message(record)),
        }
        entry.update(
            {k: _value(v) for k, v in vars(record).items() if k not in _STANDARD and k not in entry}
        )
        if record.exc_info:
            entry["exc"] = truncate(_exception(record.exc_info), 8000)
        # ensure_ascii: every control character (\n, ESC, NUL) is written as an escape.
        return json.dumps(entry, default=str, ensure_ascii=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning``: a warning is a log record, its values scrubbed."""
    logging.getLogger("py.warnings").warning(
        scrub(str(message)),
        extra={"category": category.__name__, "where": f"{Path(filename).name}:{lineno}"},
    )


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    logging.getLogger("node.uncaught").error(
        "uncaught %s", kind.__name__, exc_info=(kind, error, trace)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        logging.getLogger("node.uncaught").error(
            "uncaught %s in thread %s",
            args.exc_type.__name__,
            args.thread.name if args.thread is not None else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def quiet_libraries(debug: bool = False) -> None:
    """Libraries log warnings only; with ``debug`` everything."""
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


def configure_logging(level: str, *, debug: bool = False) -> None:
    """JSON lines on stderr for the running node (``up``, ``serve``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("DEBUG" if debug else level.upper())
    quiet_libraries(debug)
    # Warnings, and tracebacks nobody caught, go through the JSON formatter too.
    warnings.showwarning = _show_warning
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def configure_command_logging(debug: bool = False) -> None:
    """Plain ``level: message`` lines for the one-shot commands: warnings only by default."""
    root = logging.getLogger()
    if not root.handlers:  # a test runner's capture, or ``up``'s JSON lines, stay
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("mammo-node: %(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    quiet_libraries(debug)
    if not debug:  # its failures reach the operator once, translated (node.net.dimse)
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
