"""multipart/related bodies as DICOMweb uses them (PS3.18 8.6.1.2)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY.search(content_type)
    if not match:
        raise ValueError(f"multipart response without a boundary: {content_type!r}")
    return match.group(1)


def split_parts(body: bytes, boundary: str) -> list[bytes]:
    """The bodies of the parts (headers removed), in order."""
    delimiter = b"--" + boundary.encode("ascii")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        header_end = chunk.find(b"\r\n\r\n")
        if header_end < 0:
            raise ValueError("multipart part without a header/body separator")
        content = chunk[header_end + 4 :]
        if content.endswith(b"\r\n"):
            content = content[:-2]
        parts.append(content)
    return parts


def build_related(
    parts: Iterable[bytes], part_type: str = "application/dicom"
) -> tuple[bytes, str]:
    """A multipart/related body and its Content-Type header."""
    boundary = "mammo-node-" + secrets.token_hex(16)
    chunks: list[bytes] = []
    for part in parts:
        chunks += [
            f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode("ascii"),
            part,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return b"".join(chunks), content_type
