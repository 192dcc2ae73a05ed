"""Pixel limits checked BEFORE decoding, so a small file cannot make the node allocate gigabytes.

A decompression bomb is a few kilobytes whose header claims a huge image (a JPEG 2000
codestream of 16384 x 16384). The number of samples the header declares (Rows x Columns x
Number of Frames x Samples per Pixel, PS3.3 C.7.6.3) is held against a cap, and for an
encapsulated transfer syntax (PS3.5 A.4) the codestream's own header (JPEG 2000 SIZ marker,
ISO/IEC 15444-1 A.5.1; JPEG and JPEG-LS SOF, ISO/IEC 10918-1 B.2.2) must agree with
Rows and Columns, since the decoder believes the codestream, not the DICOM header.
"""

from __future__ import annotations

import struct
from typing import Final

import pydicom

from node.config import DEFAULT_MAX_IMAGE_PIXELS
from node.dicom.header import describe, element, integer, number_of_frames
from node.errors import InvalidInput

_ITEM: Final = b"\xfe\xff\x00\xe0"  # (FFFE,E000) Item, little endian (PS3.5 A.4)
_J2K_SIZ: Final = b"\xff\x4f\xff\x51"  # SOC then SIZ (ISO/IEC 15444-1 A.4.1, A.5.1)
# SOF markers (ISO/IEC 10918-1 B.1.1.3) and JPEG-LS SOF55 (ISO/IEC 14495-1 C.2.2).
_JPEG_SOF: Final = frozenset(
    {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)} | {0xCD, 0xCE, 0xCF, 0xF7}
)
_HEAD_BYTES: Final = 1 << 16  # a codestream states its size within its first bytes


def declared_samples(ds: pydicom.Dataset) -> int:
    """Rows x Columns x Number of Frames x Samples per Pixel, as the header declares them."""
    rows = integer(ds, "Rows") or 0
    columns = integer(ds, "Columns") or 0
    samples = integer(ds, "SamplesPerPixel") or 1
    frames = number_of_frames(ds) or 1
    return rows * columns * max(frames, 1) * samples


def first_fragment(pixel_data: bytes) -> bytes:
    """The start of the first fragment of encapsulated Pixel Data (after the offset table)."""
    offset = 0
    for _ in range(2):  # the Basic Offset Table item, then the first fragment
        if pixel_data[offset : offset + 4] != _ITEM or len(pixel_data) < offset + 8:
            raise InvalidInput("encapsulated Pixel Data (7FE0,0010) without items (PS3.5 A.4)")
        (length,) = struct.unpack_from("<I", pixel_data, offset + 4)
        start = offset + 8
        offset = start + length
    return pixel_data[start : start + min(length, _HEAD_BYTES)]


def codestream_size(fragment: bytes) -> tuple[int, int] | None:
    """(rows, columns) a JPEG 2000, JPEG or JPEG-LS codestream states; None for others."""
    siz = fragment.find(_J2K_SIZ)
    if siz >= 0:
        if len(fragment) < siz + 22:
            raise InvalidInput("truncated JPEG 2000 SIZ marker segment")
        xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", fragment, siz + 8)
        return ysiz - yosiz, xsiz - xosiz
    if not fragment.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 4 <= len(fragment):
        if fragment[position] != 0xFF:
            raise InvalidInput("JPEG codestream: marker expected before its frame header")
        marker = fragment[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack_from(">H", fragment, position + 2)
        if marker in _JPEG_SOF:
            if position + 9 > len(fragment):
                break
            rows, columns = struct.unpack_from(">HH", fragment, position + 5)
            return rows, columns
        position += 2 + length
    raise InvalidInput("JPEG codestream without a frame header (SOF) in its first bytes")


def check_pixel_budget(ds: pydicom.Dataset, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Refuse, before any decoding, an image larger than ``max_pixels`` samples, and an
    encapsulated one whose codestream claims another (or a larger) size than its header."""
    declared = declared_samples(ds)
    if declared > max_pixels:
        raise InvalidInput(
            f"image of {declared} samples (Rows x Columns x frames x samples) exceeds the"
            f" limit of {max_pixels} (setting max_image_pixels)"
        )
    if "PixelData" not in ds:
        return
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if transfer_syntax is None:
        return
    try:
        compressed = transfer_syntax.is_compressed
    except ValueError as error:  # pydicom: "UID is not a transfer syntax"
        raise InvalidInput(
            "Transfer Syntax UID (0002,0010) names no transfer syntax (PS3.5 10)"
        ) from error
    if not compressed:
        return
    found = element(ds, "PixelData")
    assert found is not None
    size = codestream_size(first_fragment(bytes(found.value)))
    if size is None:
        return
    rows, columns = size
    if rows * columns > max_pixels:
        raise InvalidInput(
            f"codestream claims {rows} x {columns} pixels, over the limit of {max_pixels}"
            " (a decompression bomb?)"
        )
    expected = (integer(ds, "Rows"), integer(ds, "Columns"))
    if rows and (rows, columns) != expected:
        raise InvalidInput(
            f"codestream claims {rows} x {columns} pixels but {describe('Rows')} x"
            f" {describe('Columns')} say {expected[0]} x {expected[1]}"
        )
