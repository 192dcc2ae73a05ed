"""Routing rules: which stored instances the node analyses, with a reason for every 'no'."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from node.config import MG_FOR_PRESENTATION, MG_FOR_PROCESSING, RoutingRules
from node.dicom.uids import is_valid_uid
from node.mri.assembly import non_dce_reason
from node.net.orthanc_rest import InstanceTags
from node.writers.provenance import NODE_MANUFACTURER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingDecision:
    routed: bool
    code: str  # short and fixed: safe as a metric label
    reason: str  # for people: the audit record and the API

    @property
    def decision(self) -> str:
        return "routed" if self.routed else "ignored"


ROUTED = RoutingDecision(True, "routed", "matches the routing rules")
MISSING_INTENT = RoutingDecision(
    False,
    "presentation_intent",
    "no Presentation Intent Type (0008,0068), which the DX Series Module requires (Type 1, "
    "PS3.3 C.8.11.1): it may be a FOR PROCESSING image, which is never scored",
)
# SOP Classes whose IOD has the DX Series Module, so a Presentation Intent Type (Type 1).
_INTENT_CLASSES = frozenset({MG_FOR_PRESENTATION, MG_FOR_PROCESSING})


def route(tags: InstanceTags, rules: RoutingRules) -> RoutingDecision:
    """Decide for one instance: SOP Class AND Modality AND Presentation Intent must match."""
    if tags.Manufacturer == NODE_MANUFACTURER:
        # Feedback-loop guard: the node never analyses its own results.
        return RoutingDecision(False, "own_output", "written by this node")
    if not tags.SOPClassUID or not tags.SOPInstanceUID:
        return RoutingDecision(False, "invalid", "no SOP Class UID / SOP Instance UID")
    invalid = [name for name, uid in _uids(tags) if not is_valid_uid(uid)]
    if invalid:
        # Results copy these UIDs and WADO-RS URLs carry them: refuse them here (PS3.5 9.1).
        return RoutingDecision(
            False, "invalid_uid", f"invalid UID (PS3.5 9.1) in {', '.join(invalid)}"
        )
    if tags.Modality == "MR" and rules.mr_sop_classes:
        return route_mr(tags, rules)
    if tags.Modality not in rules.modalities:
        return RoutingDecision(
            False,
            "modality",
            f"Modality {tags.Modality or '(empty)'} is not routed "
            f"(routed: {', '.join(rules.modalities)})",
        )
    intent = tags.PresentationIntentType
    if intent and intent not in rules.presentation_intents:
        return RoutingDecision(
            False,
            "presentation_intent",
            f"Presentation Intent Type {intent} is not routed "
            f"(routed: {', '.join(rules.presentation_intents)})",
        )
    if tags.SOPClassUID not in rules.sop_classes:
        return RoutingDecision(
            False,
            "sop_class",
            f"SOP Class {UID(tags.SOPClassUID).name} ({tags.SOPClassUID}) is not routed",
        )
    if not intent and tags.SOPClassUID in _INTENT_CLASSES:
        # The DX Series Module makes Presentation Intent Type Type 1 (PS3.3 C.8.11.1). An image
        # without it breaks its IOD, and raw FOR PROCESSING pixels scored as if processed give
        # wrong results: ignored with the reason, like any other image the rules do not match.
        return MISSING_INTENT
    return ROUTED


MR_DCE = RoutingDecision(True, "routed", "breast MRI, dynamic contrast-enhanced series")
# Words that name the breast where Body Part Examined (0018,0015) is empty (it is Type 3).
_BREAST_WORDS = ("BREAST", "MAMMA", "BRST")
# The header fields the DCE recognition reads (node.mri.assembly.non_dce_reason).
_DCE_KEYWORDS = (
    "ImageType",
    "SeriesDescription",
    "SequenceName",
    "PulseSequenceName",  # Enhanced MR (MR Pulse Sequence module)
    "ScanningSequence",
    "EchoTime",
)
#: Every header field the MR rule reads (InstanceTags.header).
MR_ROUTING_KEYWORDS = (
    "BodyPartExamined",
    "StudyDescription",
    "DiffusionBValue",
    *_DCE_KEYWORDS,
)


def route_mr(tags: InstanceTags, rules: RoutingRules) -> RoutingDecision:
    """Breast DCE-MRI for the kinetic CAD: SOP Class AND breast AND a DCE series."""
    if tags.SOPClassUID not in rules.mr_sop_classes:
        return RoutingDecision(
            False,
            "sop_class",
            f"SOP Class {UID(tags.SOPClassUID).name} ({tags.SOPClassUID}) is not routed for MR",
        )
    body_part = _header_text(tags.header, "BodyPartExamined").upper()
    if body_part and body_part not in rules.mr_body_parts:
        return RoutingDecision(
            False,
            "body_part",
            f"Body Part Examined {body_part} is not routed for MR "
            f"(routed: {', '.join(rules.mr_body_parts)})",
        )
    if not body_part:
        described = " ".join(
            _header_text(tags.header, k).upper() for k in ("StudyDescription", "SeriesDescription")
        )
        if not any(word in described for word in _BREAST_WORDS):
            return RoutingDecision(
                False,
                "body_part",
                "MR without Body Part Examined whose study and series descriptions do not "
                "name the breast",
            )
    if tags.header.get("DiffusionBValue") not in (None, ""):
        return RoutingDecision(False, "not_dce", "diffusion-weighted (Diffusion b-value present)")
    reason = non_dce_reason(_dce_header(tags))
    if reason is not None:
        return RoutingDecision(False, "not_dce", reason)
    return MR_DCE


def _header_text(header: dict[str, Any], keyword: str) -> str:
    value = header.get(keyword, "")
    return value.strip() if isinstance(value, str) else ""


def _dce_header(tags: InstanceTags) -> Dataset:
    """The fields the DCE recognition reads, as a dataset (Orthanc's simplified tags give
    multi-valued text joined by backslashes)."""
    ds = Dataset()
    ds.SOPClassUID, ds.Modality = tags.SOPClassUID, tags.Modality  # checked by route()
    for keyword in _DCE_KEYWORDS:
        value = tags.header.get(keyword)
        if not isinstance(value, str) or not value.strip():
            continue
        parts = [part.strip() for part in value.split("\\")]
        try:
            setattr(ds, keyword, parts if len(parts) > 1 else parts[0])
        except ValueError:
            # pydicom refuses a malformed value: the recognition goes without it, and the
            # assembly, which reads the whole header, still has the last word.
            log.debug("MR routing: %s not readable", keyword)
    return ds


def _uids(tags: InstanceTags) -> list[tuple[str, str]]:
    return [
        ("StudyInstanceUID", tags.StudyInstanceUID),
        ("SeriesInstanceUID", tags.SeriesInstanceUID),
        ("SOPInstanceUID", tags.SOPInstanceUID),
        ("SOPClassUID", tags.SOPClassUID),
    ]
