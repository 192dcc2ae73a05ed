"""Routing rules: SOP class AND Modality AND Presentation Intent, with a reason for each 'no'."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from node.config import MG_FOR_PRESENTATION, MG_FOR_PROCESSING, RoutingRules
from node.ingest.intake import idempotency_key
from node.ingest.routing import route
from node.net.orthanc_rest import InstanceTags

MG = InstanceTags(
    orthanc_id="x",
    SOPInstanceUID="1.2.3.4",
    SOPClassUID=MG_FOR_PRESENTATION,
    SeriesInstanceUID="1.2.3",
    StudyInstanceUID="1.2",
    Modality="MG",
    PresentationIntentType="FOR PRESENTATION",
    Manufacturer="ACME",
)
RULES = RoutingRules()


def test_mammogram_for_presentation_is_routed() -> None:
    assert route(MG, RULES).routed


def test_for_processing_is_not() -> None:
    decision = route(
        replace(MG, SOPClassUID=MG_FOR_PROCESSING, PresentationIntentType="FOR PROCESSING"), RULES
    )
    assert not decision.routed and decision.code == "presentation_intent"
    assert "FOR PROCESSING" in decision.reason


def test_other_modality_is_not() -> None:
    decision = route(replace(MG, Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.2"), RULES)
    assert decision.code == "modality" and "Modality CT" in decision.reason


def test_secondary_capture_with_modality_mg_is_routed_by_default() -> None:
    # Digitised film and archive exports (CBIS-DDSM) are Secondary Capture with Modality MG.
    sc = replace(MG, SOPClassUID="1.2.840.10008.5.1.4.1.1.7", PresentationIntentType="")
    assert route(sc, RULES).routed
    assert route(replace(sc, Modality="OT"), RULES).code == "modality"
    narrow = RoutingRules(sop_classes=(MG_FOR_PRESENTATION,))
    assert route(sc, narrow).code == "sop_class"
    assert "Secondary Capture" in route(sc, narrow).reason
    # The node's own Secondary Capture summaries never are.
    assert route(replace(sc, Manufacturer="mammo-node"), RULES).code == "own_output"


def test_own_outputs_are_never_routed() -> None:
    assert route(replace(MG, Manufacturer="mammo-node"), RULES).code == "own_output"


@given(
    modality=st.text(max_size=16),
    intent=st.sampled_from(["", "FOR PRESENTATION", "FOR PROCESSING"]),
)
def test_routed_only_when_every_rule_matches(modality: str, intent: str) -> None:
    decision = route(replace(MG, Modality=modality, PresentationIntentType=intent), RULES)
    assert decision.routed == (modality == "MG" and intent != "FOR PROCESSING")


@given(
    st.lists(
        st.from_regex(r"1\.2\.[0-9]{1,8}", fullmatch=True), min_size=1, max_size=8, unique=True
    )
)
def test_idempotency_key_ignores_order(uids: list[str]) -> None:
    assert idempotency_key("1.2", "m/1", uids) == idempotency_key(
        "1.2", "m/1", list(reversed(uids))
    )
    assert idempotency_key("1.2", "m/1", uids) != idempotency_key("1.2", "m/2", uids)
