"""Broken and hostile DICOM made from the synthetic mammogram, for the fuzz figure and tests.

What a careless modality or an attacker sends: truncated files, wrong lengths and VRs,
decompression bombs, bogus transfer syntaxes, hostile names and UIDs, images no model should
score. Every input is its own study (unless its UIDs are the fault), so its outcome can be
found; the same ``seed`` always gives the same inputs.
"""

from __future__ import annotations

import copy
import io
import random
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydicom import dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import UID

from node.dicom.uids import derive_uid
from node.synthetic.dicom import synthetic_exam

J2K_LOSSLESS: Final = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE: Final = "1.2.840.10008.1.2.4.50"
DEFLATED: Final = "1.2.840.10008.1.2.1.99"
HOSTILE_UIDS: Final = (
    "../x",
    "1.2.3;rm -rf /",
    "1.2.3\\4.5",
    "../../../../etc/passwd",
    "%00",
    "1.02.3",
    "1." + "9" * 70,
    "1.2.3.",
    "1.2.3 4",
)
HOSTILE_NAMES: Final = (
    "Doe^Jane\nINJECT",
    "Doe^\x1b[31mRED\x1b[0m",
    "Doe\x00Jane",
    "A" * 10_000,
    'x"}\n{"level":"error","message":"forged"}',
    "Doe\\Jane",
    "Doe^Jane^^^^^^",
)


@dataclass(frozen=True)
class BrokenInput:
    """One hostile input: its Part 10 bytes (for STOW-RS) and, when it can be sent as a
    dataset, the dataset (for C-STORE)."""

    kind: str
    data: bytes
    study_instance_uid: str
    dataset: Dataset | None = None


def part10(ds: Dataset) -> bytes:
    """``ds`` as a Part 10 file, written as it is (wrong VRs and all)."""
    buffer = io.BytesIO()
    ds.preamble = b"\x00" * 128
    dcmwrite(buffer, ds, implicit_vr=False, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def j2k_siz(rows: int, columns: int) -> bytes:
    """A JPEG 2000 codestream that claims rows x columns and holds next to nothing: a bomb."""
    siz = struct.pack(
        ">HHIIIIIIIIHBBB", 41, 0, columns, rows, 0, 0, columns, rows, 0, 0, 1, 15, 1, 1
    )
    cod = b"\xff\x52" + struct.pack(">HBBHBBBBBB", 12, 0, 0, 1, 0, 5, 4, 4, 0, 1)
    qcd = b"\xff\x5c" + struct.pack(">HB", 4, 0x40) + b"\x00"
    body = b"\xff\x90" + struct.pack(">HHIBB", 10, 0, 4000, 0, 1) + b"\xff\x93"
    return b"\xff\x4f\xff\x51" + siz + cod + qcd + body + bytes(3900) + b"\xff\xd9"


def jpeg_sof(rows: int, columns: int) -> bytes:
    """A baseline JPEG that claims rows x columns (SOF0) and holds no scan."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, rows, columns, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xda" + struct.pack(">H", 8) + bytes(6) + b"\xff\xd9"


Mutation = Callable[[Dataset, random.Random], Dataset | bytes]


def _set(keyword: str, value: object) -> Mutation:
    def mutate(ds: Dataset, _rng: random.Random) -> Dataset:
        setattr(ds, keyword, value)
        return ds

    return mutate


def _wrong_vr(tag: int, vr: str, value: object) -> Mutation:
    def mutate(ds: Dataset, _rng: random.Random) -> Dataset:
        ds[tag] = DataElement(tag, vr, value)
        return ds

    return mutate


def _delete(keyword: str) -> Mutation:
    def mutate(ds: Dataset, _rng: random.Random) -> Dataset:
        delattr(ds, keyword)
        return ds

    return mutate


def _tiny(ds: Dataset, _rng: random.Random) -> Dataset:
    ds.set_pixel_data(np.array([[0, 4095], [4095, 0]], np.uint16), "MONOCHROME2", 12)
    return ds


def _empty(ds: Dataset, _rng: random.Random) -> Dataset:
    ds.PixelData = bytes(len(ds.PixelData))
    return ds


def _encapsulated(syntax: str, frame: Callable[[Dataset], bytes], rows: int = 0) -> Mutation:
    def mutate(ds: Dataset, _rng: random.Random) -> Dataset:
        if rows:
            ds.Rows = ds.Columns = rows
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds.PixelData = encapsulate([frame(ds)])
        ds["PixelData"].VR = "OB"
        return ds

    return mutate


def _claims(syntax: str) -> Mutation:
    """A file meta that names a transfer syntax the dataset is not in."""

    def mutate(ds: Dataset, _rng: random.Random) -> bytes:
        meta = copy.deepcopy(ds.file_meta)
        meta.TransferSyntaxUID = UID(syntax)
        head = DicomBytesIO()
        head.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(head, meta, enforce_standard=True)
        body = io.BytesIO()
        del ds.file_meta
        ds.preamble = None
        dcmwrite(body, ds, implicit_vr=False, little_endian=True, enforce_file_format=False)
        return bytes(head.getvalue()) + body.getvalue()

    return mutate


def _short_pixels(ds: Dataset, rng: random.Random) -> Dataset:
    ds.PixelData = ds.PixelData[: rng.randrange(1, len(ds.PixelData) // 2)]
    return ds


def _huge_native(ds: Dataset, _rng: random.Random) -> Dataset:
    ds.Rows = ds.Columns = 65535
    return ds


def _truncate(ds: Dataset, rng: random.Random) -> bytes:
    data = part10(ds)
    return data[: rng.randrange(1, len(data) - 1)]


def _flip(ds: Dataset, rng: random.Random) -> bytes:
    """A few random bytes of the header (after the preamble) overwritten."""
    data = bytearray(part10(ds))
    header_end = min(len(data), 2048)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(132, header_end)] = rng.randrange(256)
    return bytes(data)


def _bad_length(ds: Dataset, rng: random.Random) -> bytes:
    """One element's length field set to a lie (explicit VR little endian, 16-bit lengths)."""
    data = bytearray(part10(ds))
    start = data.find(b"\x10\x00\x10\x00PN") if rng.random() < 0.5 else data.find(b"\x28\x00")
    if start >= 0:
        data[start + 6 : start + 8] = struct.pack("<H", rng.choice((0, 1, 0xFFFF, 0x7FFF)))
    return bytes(data)


def _unreadable_window(ds: Dataset, _rng: random.Random) -> bytes:
    """Window Center (DS) with a byte no decimal string holds, as a flipped bit leaves it."""
    data = bytearray(part10(ds))
    start = data.find(b"\x28\x00\x50\x10DS")
    if start >= 0:
        data[start + 8] = 0xB7
    return bytes(data)


def mutations() -> list[tuple[str, Mutation]]:
    """Every kind of broken input, by name."""
    found: list[tuple[str, Mutation]] = [
        ("missing-patient-id", _delete("PatientID")),
        ("patient-name-vr-us", _wrong_vr(0x00100010, "US", 1)),
        ("sop-class-vr-us", _wrong_vr(0x00080016, "US", 1)),
        ("rows-vr-lo", _wrong_vr(0x00280010, "LO", "abcd")),
        ("bits-allocated-vr-ds", _wrong_vr(0x00280100, "DS", "1.5")),
        ("high-bit-20", _set("HighBit", 20)),
        ("frames-0", _set("NumberOfFrames", 0)),
        ("tiny-2x2", _tiny),
        ("empty-image", _empty),
        ("short-pixel-data", _short_pixels),
        ("huge-native-rows", _huge_native),
        (
            "bomb-j2k-16384",
            _encapsulated(J2K_LOSSLESS, lambda ds: j2k_siz(16384, 16384), rows=16384),
        ),
        ("bomb-j2k-siz-lies", _encapsulated(J2K_LOSSLESS, lambda ds: j2k_siz(16384, 16384))),
        (
            "bomb-jpeg-sof",
            _encapsulated(JPEG_BASELINE, lambda ds: jpeg_sof(65535, 65535)),
        ),
        ("bogus-syntax", _claims("1.2.3.4.5.6")),
        ("claims-deflate", _claims(DEFLATED)),
        ("claims-j2k-native", _claims(J2K_LOSSLESS)),
        ("truncated", _truncate),
        ("bad-length", _bad_length),
        ("flipped-bytes", _flip),
        ("window-center-unreadable", _unreadable_window),
        ("modality-ct", _set("Modality", "CT")),
        ("no-intent", _delete("PresentationIntentType")),
    ]
    for index, name in enumerate(HOSTILE_NAMES):
        found.append((f"hostile-name-{index}", _set("PatientName", name)))
    for index, uid in enumerate(HOSTILE_UIDS):
        found.append((f"hostile-study-uid-{index}", _set("StudyInstanceUID", uid)))
        found.append((f"hostile-series-uid-{index}", _set("SeriesInstanceUID", uid)))
        found.append((f"hostile-sop-uid-{index}", _set("SOPInstanceUID", uid)))
    return found


def broken_inputs(
    count: int, seed: int = 0, rows: int = 256, columns: int = 208
) -> Iterator[BrokenInput]:
    """``count`` broken inputs, cycling through every kind, each in a study of its own."""
    base, _truth = synthetic_exam(seed, rows=rows, columns=columns)[0]
    kinds = mutations()
    rng = random.Random(seed)
    for index in range(count):
        kind, mutate = kinds[index % len(kinds)]
        ds = copy.deepcopy(base)
        study = derive_uid("mammo-node hostile study", str(seed), str(index))
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = derive_uid(study, "series")
        ds.SOPInstanceUID = derive_uid(study, "instance")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        with warnings.catch_warnings():  # pydicom warns of the very faults made on purpose
            warnings.simplefilter("ignore")
            made = mutate(ds, rng)
            data = made if isinstance(made, bytes) else _written(kind, made)
        if isinstance(made, bytes):
            yield BrokenInput(kind, data, study)
        else:
            value = made.get("StudyInstanceUID", study)
            uid = "\\".join(value) if isinstance(value, MultiValue) else str(value)
            yield BrokenInput(kind, data, uid, made)


def _written(kind: str, ds: Dataset) -> bytes:
    try:
        return part10(ds)
    except (ValueError, TypeError, struct.error) as error:
        raise AssertionError(f"{kind}: cannot write the broken input: {error}") from error
