"""Routing rules: which stored instances the node analyses, with a reason for every 'no'."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID

from node.config import MG_FOR_PRESENTATION, MG_FOR_PROCESSING, RoutingRules
from node.dicom.uids import is_valid_uid
from node.net.orthanc_rest import InstanceTags
from node.writers.provenance import NODE_MANUFACTURER


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


def _uids(tags: InstanceTags) -> list[tuple[str, str]]:
    return [
        ("StudyInstanceUID", tags.StudyInstanceUID),
        ("SeriesInstanceUID", tags.SeriesInstanceUID),
        ("SOPInstanceUID", tags.SOPInstanceUID),
        ("SOPClassUID", tags.SOPClassUID),
    ]
