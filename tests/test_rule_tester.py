"""The routing-rule tester says which rule routes or ignores each instance, and why."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from node.config import RoutingRules
from node.ingest.rule_tester import try_files
from node.synthetic.dicom import synthetic_exam
from node.writers.provenance import NODE_MANUFACTURER

cli = importlib.import_module("node.cli.main")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """One image of each kind: routed, CT, for processing, the node's own output, no DICOM."""
    images = [ds for ds, _ in synthetic_exam(seed=11)]
    kinds = {"routed": images[0], "ct": images[1], "processing": images[2], "own": images[3]}
    kinds["ct"].Modality = "CT"
    kinds["processing"].PresentationIntentType = "FOR PROCESSING"
    kinds["own"].Manufacturer = NODE_MANUFACTURER
    for name, ds in kinds.items():
        ds.save_as(tmp_path / f"{name}.dcm", enforce_file_format=True)
    (tmp_path / "notes.txt").write_text("not DICOM")
    return tmp_path


def test_each_instance_gets_its_rule_and_reason(folder: Path) -> None:
    trials = {Path(t.source).stem: t.decision for t in try_files([folder], RoutingRules())}
    assert {name: d.code for name, d in trials.items()} == {
        "ct": "modality",
        "notes": "unreadable",
        "own": "own_output",
        "processing": "presentation_intent",
        "routed": "routed",
    }
    assert "Modality CT is not routed (routed: MG)" == trials["ct"].reason
    assert trials["routed"].routed and not trials["ct"].routed


def test_the_command_prints_one_json_object_per_instance(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["routing", "test", str(folder), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(row["source"]).stem: row for row in rows}
    assert by_name["processing"]["decision"] == "ignored"
    assert by_name["processing"]["rule"] == "presentation_intent"
    assert by_name["routed"]["Modality"] == "MG"


def test_files_or_a_study_not_both(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["routing", "test", str(folder), "--study", "1.2.3"]) == 2
    assert "one of the two" in capsys.readouterr().err
