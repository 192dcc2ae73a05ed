"""Structured (JSON) logs. Callers pass identifiers as ``extra``; patient data never goes in.

Libraries log their own chatter at INFO (fontTools writes a line per font subset of every
PDF report: 91% of the node's stderr before this was quieted); only their warnings show,
unless the operator asks for ``--debug``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

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
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


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
