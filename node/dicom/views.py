"""Breast laterality and mammographic view from real-world headers, in a documented order.

Modalities and archives fill these in different places; the node reads, first match wins:

Laterality (R/L):
1. Image Laterality (0020,0062), the MG IOD's own attribute (PS3.3 C.8.11.7);
2. Laterality (0020,0060) of the series (PS3.3 C.7.3.1; CBIS-DDSM and many Secondary
   Captures carry only this);
3. Frame Laterality (0020,9072) in the shared Frame Anatomy Sequence (enhanced objects);
4. Patient Orientation (0020,0020), column direction, for the standard mammography layout
   (IHE Mammography Image profile: R CC "P\\L", L CC "A\\R", R MLO "P\\FL", L MLO "A\\FR"): an
   "L" in the column direction means the image runs towards the patient's left, so it shows
   the right breast, and the reverse;
5. words in Series Description (0008,103E), Protocol Name (0018,1030) or Image Comments
   (0020,4000): "LEFT"/"RIGHT", or a token such as "LCC", "R_MLO", "L-CC".

View (CC, MLO, ML, LM, XCCL, ...):
1. View Position (0018,5101) when it names a mammography view;
2. View Code Sequence (0054,0220): CID 4014 codes (SNOMED CT and their legacy SRT values),
   then the Code Meaning text;
3. Patient Orientation (0020,0020): a non-standard value naming the view itself ("CC", "MLO",
   as CBIS-DDSM writes), else the standard layout: a foot ("F") in the column direction means
   an oblique/lateral view (MLO), an "L" or "R" alone means CC;
4. view tokens in Series Description / Protocol Name / Image Comments.

Each function takes a ``get(keyword)`` accessor, so the same rules apply to a pydicom
Dataset (the worker) and to Orthanc's simplified tags (intake), and the answer says where
it came from (for the audit record). The service, ``predict`` and the dataset importers all
read through here, so an image is mirrored the same way in training and in service.

Patient and exam (``identity``), for the data path (patient-level splits, one exam per
woman and day): Patient ID (0010,0020) as it is, unless it names one image: archives that
publish every view as its own "patient" (CBIS-DDSM on TCIA: ``Mass-Test_P_00173_LEFT_CC``,
ROI masks with a ``_1`` after it, one Study Instance UID per view) carry the side and view
at its end. Then the woman is the ID without that suffix (and without CBIS-DDSM's
abnormality-set prefix, since ``Mass-`` and ``Calc-`` sets share patients), and the exam
is that woman on the Study Date, not the per-view Study Instance UID.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pydicom

Getter = Callable[[str], Any]

# CID 4014 View for Mammography: SNOMED CT codes and their legacy SNOMED-RT (SRT) values.
VIEW_CODES: Final[dict[str, str]] = {
    "399162004": "CC",
    "R-10242": "CC",
    "399368009": "MLO",
    "R-10226": "MLO",
    "399260004": "ML",
    "R-10224": "ML",
    "399352003": "LM",
    "R-10236": "LM",
    "399192008": "XCCL",
    "R-1024A": "XCCL",
    "399101009": "XCCM",
    "R-1024B": "XCCM",
    "399196006": "FB",
    "R-10244": "FB",
    "399099002": "LMO",
    "R-10228": "LMO",
    "399188001": "SIO",
    "R-102D0": "SIO",
}
# Code Meaning words (longest first, so "medio-lateral oblique" wins over "medio-lateral").
_VIEW_MEANINGS: Final[tuple[tuple[str, str], ...]] = (
    ("cranio-caudal exaggerated laterally", "XCCL"),
    ("cranio-caudal exaggerated medially", "XCCM"),
    ("medio-lateral oblique", "MLO"),
    ("mediolateral oblique", "MLO"),
    ("latero-medial oblique", "LMO"),
    ("cranio-caudal", "CC"),
    ("craniocaudal", "CC"),
    ("caudo-cranial", "FB"),
    ("medio-lateral", "ML"),
    ("mediolateral", "ML"),
    ("latero-medial", "LM"),
)
MAMMOGRAPHY_VIEWS: Final = frozenset(set(VIEW_CODES.values()) | {"CV", "AT", "SPOT", "MAG"})
_VIEW_TOKEN = re.compile(
    r"(?<![A-Z])(R|L|RIGHT|LEFT)?[ _\-]?(XCCL|XCCM|MLO|LMO|CC|ML|LM|FB|SIO)(?![A-Z])"
)
_SIDE_WORD = re.compile(r"(?<![A-Z])(RIGHT|LEFT)(?![A-Z])")
_ORIENTATION = re.compile(r"^[APRLHF]+$")
_TEXT_TAGS: Final = ("SeriesDescription", "ProtocolName", "ImageComments")
_PER_IMAGE_PATIENT = re.compile(
    r"^(?:(?:MASS|CALC)-(?:TRAINING|TEST)_)?(?P<patient>.+?)[ _\-](?:RIGHT|LEFT|R|L)[ _\-]?"
    r"(?:XCCL|XCCM|MLO|LMO|CC|ML|LM|FB|SIO)(?:_\d+)?$",
    re.IGNORECASE,
)
PER_IMAGE_PATIENT: Final = "PatientID (per-image suffix removed)"


@dataclass(frozen=True)
class Normalised:
    """One image's breast and view, and the attribute each was read from ("" when unknown)."""

    laterality: str  # "R", "L" or ""
    view: str  # "CC", "MLO", ... or ""
    laterality_from: str = ""
    view_from: str = ""

    @property
    def label(self) -> str:
        """The exam-assembly key, e.g. "R CC" (empty parts when unknown)."""
        return f"{self.laterality} {self.view}".strip()


@dataclass(frozen=True)
class Identity:
    """The woman and the exam an image belongs to, and where the patient was read from."""

    patient_id: str  # "" when the header has none
    study_key: str  # Study Instance UID, or "<patient_id>/<StudyDate>" for per-view studies
    patient_from: str = ""  # "PatientID", "PatientID (per-image suffix removed)" or ""

    @property
    def per_image(self) -> bool:
        """True when the header gave every image its own patient and study."""
        return self.patient_from == PER_IMAGE_PATIENT


def dataset_getter(dataset: pydicom.Dataset) -> Getter:
    return lambda keyword: dataset.get(keyword)


def tags_getter(tags: Mapping[str, Any]) -> Getter:
    """For Orthanc's simplified tags (sequences are lists of dicts)."""
    return lambda keyword: tags.get(keyword)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v).strip().upper() for v in value)
    return str(value).strip().upper()


def _items(value: Any) -> Iterable[Any]:
    """Items of a sequence from pydicom (Dataset) or Orthanc (dict)."""
    if isinstance(value, list | tuple | pydicom.Sequence):
        return list(value)
    return []


def _item_get(item: Any, keyword: str) -> Any:
    return item.get(keyword) if hasattr(item, "get") else None


def _orientation(get: Getter) -> tuple[str, str] | None:
    """(row, column) directions of Patient Orientation when it is a valid value."""
    raw = get("PatientOrientation")
    values = [str(v).strip().upper() for v in raw] if _is_multi(raw) else _text(raw).split("\\")
    if len(values) == 2 and all(_ORIENTATION.match(v) for v in values):
        return values[0], values[1]
    return None


def _is_multi(value: Any) -> bool:
    return isinstance(value, list | tuple | pydicom.multival.MultiValue)


def laterality(get: Getter) -> tuple[str, str]:
    """(laterality, source attribute) by the rules in the module docstring."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(get(keyword))
        if value in ("R", "L"):
            return value, keyword
    for group in _items(get("SharedFunctionalGroupsSequence")):
        for anatomy in _items(_item_get(group, "FrameAnatomySequence")):
            value = _text(_item_get(anatomy, "FrameLaterality"))
            if value in ("R", "L"):
                return value, "FrameLaterality"
    orientation = _orientation(get)
    if orientation is not None:
        column = orientation[1]
        if "L" in column and "R" not in column:
            return "R", "PatientOrientation"
        if "R" in column and "L" not in column:
            return "L", "PatientOrientation"
    for keyword in _TEXT_TAGS:
        text = _text(get(keyword))
        word = _SIDE_WORD.search(text)
        if word:
            return word.group(1)[0], keyword
        token = _VIEW_TOKEN.search(text)
        if token and token.group(1):
            return token.group(1)[0], keyword
    return "", ""


def view(get: Getter) -> tuple[str, str]:
    """(view, source attribute) by the rules in the module docstring."""
    position = _text(get("ViewPosition"))
    if position in MAMMOGRAPHY_VIEWS:
        return position, "ViewPosition"
    for item in _items(get("ViewCodeSequence")):
        code = _text(_item_get(item, "CodeValue"))
        if code in VIEW_CODES:
            return VIEW_CODES[code], "ViewCodeSequence"
        meaning = _text(_item_get(item, "CodeMeaning")).lower()
        for words, name in _VIEW_MEANINGS:
            if words in meaning:
                return name, "ViewCodeSequence"
    raw = _text(get("PatientOrientation"))
    if raw in MAMMOGRAPHY_VIEWS:  # non-standard: the view written where orientation belongs
        return raw, "PatientOrientation"
    orientation = _orientation(get)
    if orientation is not None:
        column = orientation[1]
        if "F" in column or "H" in column:
            return "MLO", "PatientOrientation"
        if column in ("L", "R"):
            return "CC", "PatientOrientation"
    for keyword in _TEXT_TAGS:
        token = _VIEW_TOKEN.search(_text(get(keyword)))
        if token:
            return token.group(2), keyword
    return "", ""


def identity(get: Getter) -> Identity:
    """(patient, exam) by the rule in the module docstring."""
    patient = str(get("PatientID") or "").strip()
    study = str(get("StudyInstanceUID") or "").strip()
    match = _PER_IMAGE_PATIENT.match(patient)
    if match is None:
        return Identity(patient, study, "PatientID" if patient else "")
    woman = match.group("patient")
    return Identity(woman, f"{woman}/{str(get('StudyDate') or '').strip()}", PER_IMAGE_PATIENT)


def normalise(get: Getter) -> Normalised:
    side, side_from = laterality(get)
    name, name_from = view(get)
    return Normalised(side, name, side_from, name_from)


def normalise_dataset(dataset: pydicom.Dataset) -> Normalised:
    return normalise(dataset_getter(dataset))


def valid_patient_orientation(dataset: pydicom.Dataset) -> bool:
    """True when (0020,0020) is absent/empty or two valid direction values (PS3.3 C.7.6.1.1.1)."""
    if not dataset.get("PatientOrientation"):
        return True
    return _orientation(dataset_getter(dataset)) is not None


def missing_views(present: Iterable[str], expected: Iterable[str]) -> list[str]:
    """Expected view labels ("R CC", ...) not in ``present``, in the expected order."""
    seen = set(present)
    return [label for label in expected if label not in seen]
