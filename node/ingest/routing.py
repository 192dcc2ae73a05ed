"""Routing rules: which stored instances the node analyses, with a reason for every 'no'."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID

from node.config import RoutingRules
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


def route(tags: InstanceTags, rules: RoutingRules) -> RoutingDecision:
    """Decide for one instance: SOP Class AND Modality AND Presentation Intent must match."""
    if tags.Manufacturer == NODE_MANUFACTURER:
        # Feedback-loop guard: the node never analyses its own results.
        return RoutingDecision(False, "own_output", "written by this node")
    if not tags.SOPClassUID or not tags.SOPInstanceUID:
        return RoutingDecision(False, "invalid", "no SOP Class UID / SOP Instance UID")
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
    return ROUTED
