"""The header checks every routed image passes before anything reads it: the one place where
pydicom's errors about a malformed header become ``InvalidInput`` with a reason.

Strict about what the node reads or copies into its results (identifying UIDs, the Patient
and Study attributes the writers copy, the Image Pixel attributes), tolerant of the rest.
A header that fails is a final outcome for that image: retrying cannot repair it. Reasons
name the attribute and its tag, never its value (values may identify the patient).
"""

from __future__ import annotations

import re
import struct
from typing import Final

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.valuerep import validate_value

from node.dicom.uids import is_valid_uid
from node.errors import InvalidInput

#: The UIDs results reference or copy (PS3.3 C.12.1 SOP Common, C.7.2.1, C.7.3.1).
REQUIRED_UIDS: Final = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Patient and General Study attributes the writers copy into results (PS3.3 C.7.1.1, C.7.2.1).
COPIED_TEXT: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: Image Pixel Module attributes read as integers (PS3.3 C.7.6.3).
IMAGE_INTEGERS: Final = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
)
# Errors pydicom raises while converting a raw element to its value.
_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error)
# PS3.5 6.2: text VRs exclude control characters; ESC only for ISO 2022 code extensions.
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")


def describe(keyword: str) -> str:
    """``Rows (0028,0010)``: how reasons name an attribute."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def element(ds: pydicom.Dataset, keyword: str) -> DataElement | None:
    """The element, converted (None when absent); InvalidInput when its value cannot be read."""
    if keyword not in ds:
        return None
    try:
        return ds.data_element(keyword)
    except _CONVERSION_ERRORS as error:
        raise InvalidInput(
            f"{describe(keyword)} cannot be read ({type(error).__name__})"
        ) from error


def _expected_vr(found: DataElement, keyword: str) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    allowed = dictionary_VR(tag).split(" or ")
    if found.VR not in allowed and found.VR != "UN":
        raise InvalidInput(
            f"{describe(keyword)} has VR {found.VR}; PS3.6 gives {' or '.join(allowed)}"
        )


def integer(ds: pydicom.Dataset, keyword: str) -> int | None:
    """An Image Pixel attribute as an int (None when absent); InvalidInput when it is not one."""
    found = element(ds, keyword)
    if found is None or found.value is None or found.value == "":
        return None
    _expected_vr(found, keyword)
    value = found.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{describe(keyword)} is not a single integer")
    return value


def _check_text(ds: pydicom.Dataset, keyword: str) -> None:
    found = element(ds, keyword)
    if found is None:
        return
    _expected_vr(found, keyword)
    values = found.value if isinstance(found.value, pydicom.multival.MultiValue) else [found.value]
    if len(values) > 1:
        raise InvalidInput(
            f"{describe(keyword)} holds {len(values)} values (a backslash): one is allowed"
        )
    text = "" if values[0] is None else str(values[0])
    iso2022 = "ISO 2022" in str(ds.get("SpecificCharacterSet", ""))
    if _CONTROL.search(text) or ("\x1b" in text and not iso2022):
        raise InvalidInput(f"{describe(keyword)} holds control characters (PS3.5 6.2)")
    try:
        validate_value(found.VR, text, pydicom_config.RAISE)
    except ValueError as error:
        # pydicom's message quotes the value: keep only what kind of fault it is.
        raise InvalidInput(
            f"{describe(keyword)} is not a valid {found.VR} value (PS3.5 6.2)"
        ) from error


def check_uids(ds: pydicom.Dataset) -> None:
    """The identifying UIDs are present and valid (PS3.5 9.1): results copy them."""
    for keyword in REQUIRED_UIDS:
        found = element(ds, keyword)
        if found is None or not found.value:
            raise InvalidInput(f"no {describe(keyword)}")
        _expected_vr(found, keyword)
        if isinstance(found.value, pydicom.multival.MultiValue) or not is_valid_uid(
            str(found.value)
        ):
            raise InvalidInput(f"{describe(keyword)} is not a valid UID (PS3.5 9.1)")


def check_header(ds: pydicom.Dataset) -> None:
    """Refuse, with the reason, a header the node cannot read or could not copy validly.

    Patient ID is Type 2 (PS3.3 C.7.1.1): it must be present, and may be empty.
    """
    check_uids(ds)
    if "PatientID" not in ds:
        raise InvalidInput(f"no {describe('PatientID')}: Type 2, present even when empty")
    for keyword in COPIED_TEXT:
        _check_text(ds, keyword)
    for keyword in IMAGE_INTEGERS:
        integer(ds, keyword)
    number_of_frames(ds)


def number_of_frames(ds: pydicom.Dataset) -> int | None:
    """Number of Frames (IS) as an int, None when absent; InvalidInput when not a number."""
    found = element(ds, "NumberOfFrames")
    if found is None or found.value in (None, ""):
        return None
    try:
        return int(found.value)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"{describe('NumberOfFrames')} is not an integer") from error
