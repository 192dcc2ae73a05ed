"""The job's JSON contracts: ExamRequest (payload) and ExamSummary (result) keep the stored
shape byte for byte, and reading is strict: a missing or wrong-typed field is named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node.domain import ExamRequest, ExamSummary, ModelSpec

PAYLOAD: dict[str, Any] = {
    "orthanc_study_id": "6e2c0a52-0b1e9c5f-3d2a7b11-90aa3c4d-5e6f7a8b",
    "instances": [
        {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3", "SOPInstanceUID": "1.2.3.4"},
        {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3", "SOPInstanceUID": "1.2.3.5"},
    ],
    "views": ["L CC", "R CC"],
    "missing_views": ["L MLO", "R MLO"],
    "revision": 1,
}

RESULT: dict[str, Any] = {
    "model": "demo/1.0.0",
    "score": 0.8123,
    "recall": True,
    "complete": False,
    "missing_views": ["L MLO"],
    "revision": 0,
    "breasts": {"L": None, "R": 0.8123},
    "images": [
        {
            "SOPInstanceUID": "1.2.3.4",
            "ImageLaterality": "R",
            "ViewPosition": "CC",
            "score": 0.8123,
            "findings": 2,
        }
    ],
    "skipped": [{"SOPInstanceUID": "1.2.3.5", "reason": "no pixel data"}],
    "outputs": [
        {
            "kind": "tid1500",
            "SOPInstanceUID": "2.25.1",
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.34",
            "SeriesInstanceUID": "2.25.2",
            "Modality": "SR",
        }
    ],
    "published": {"pacs": 1},
    "deliveries": [{"destination": "pacs", "state": "delivered", "attempts": 1}],
}


@pytest.mark.parametrize(("kind", "stored"), [(ExamRequest, PAYLOAD), (ExamSummary, RESULT)])
def test_a_stored_row_reads_and_writes_back_byte_for_byte(
    kind: type[ExamRequest] | type[ExamSummary], stored: dict[str, Any]
) -> None:
    assert json.dumps(kind.from_json(stored).to_json()) == json.dumps(stored)


def test_rows_from_before_assembly_and_revisions_stay_readable() -> None:
    old = {"orthanc_study_id": "x", "instances": []}
    assert ExamRequest.from_json(old) == ExamRequest("x", ())
    summary = ExamSummary.from_json(
        {k: v for k, v in RESULT.items() if k not in ("complete", "missing_views", "revision")}
    )
    assert (summary.complete, summary.missing_views, summary.revision) == (True, (), 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"orthanc_study_id": None}, "payload.orthanc_study_id must be a string"),
        ({"instances": "1.2.3"}, "payload.instances must be a list"),
        ({"revision": "1"}, "payload.revision must be an integer"),
        ({"revision": True}, "payload.revision must be an integer"),
        ({"views": ["L CC", 3]}, r"payload.views\[1\] must be a string"),
    ],
)
def test_a_wrong_typed_payload_field_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExamRequest.from_json(PAYLOAD | change)


def test_a_missing_field_is_named() -> None:
    with pytest.raises(ValueError, match=r"payload.instances\[0\].SOPInstanceUID is missing"):
        ExamRequest.from_json(
            PAYLOAD | {"instances": [{"StudyInstanceUID": "1", "SeriesInstanceUID": "2"}]}
        )
    with pytest.raises(ValueError, match=r"result\.recall is missing"):
        ExamSummary.from_json({k: v for k, v in RESULT.items() if k != "recall"})
    with pytest.raises(ValueError, match="result must be a JSON object"):
        ExamSummary.from_json(None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": "0.8"}, "result.score must be a number"),
        ({"recall": 1}, "result.recall must be true or false"),
        ({"breasts": {"L": None}}, "result.breasts.R is missing"),
        ({"images": [{**RESULT["images"][0], "findings": 1.5}]}, r"images\[0\].findings"),
        ({"published": {"pacs": "1"}}, "result.published.pacs must be an integer"),
    ],
)
def test_a_wrong_typed_result_field_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExamSummary.from_json(RESULT | change)


def test_model_spec_ref_is_id_slash_version() -> None:
    spec = ModelSpec(
        "demo", "1.0.0", "Demo", "m", "2.25.9", "research", "synthetic", 0.5, 0.5, (64, 52)
    )
    assert spec.ref == "demo/1.0.0"
