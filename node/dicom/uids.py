"""Deterministic DICOM UIDs, so a retried or re-sent exam never yields duplicate results.

A UID is derived from the parts that identify an output (source UID, model id and version,
output kind): the same parts always give the same UID. The "2.25." root turns a 128-bit
number into a UID without a registered organisation root (PS3.5 B.2).
"""

from __future__ import annotations

import hashlib
import re

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def derive_uid(*parts: str) -> str:
    """Return a UID that depends only on ``parts`` (order matters)."""
    if not parts or any(not isinstance(p, str) or not p for p in parts):
        raise ValueError("derive_uid needs one or more non-empty strings")
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    uid = "2.25." + str(int.from_bytes(digest[:16], "big"))
    assert len(uid) <= 64
    return uid


def is_valid_uid(value: str) -> bool:
    """True when ``value`` is a syntactically valid UID (PS3.5 9.1)."""
    return 0 < len(value) <= 64 and bool(_UID.match(value))
