"""The routing-rule tester: which rule routes or ignores each instance, and why, without
running a model (the same ``route`` the node applies to every stored instance)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from node.config import RoutingRules
from node.ingest.routing import MR_ROUTING_KEYWORDS, RoutingDecision, route
from node.net.orthanc_rest import InstanceTags, OrthancRest


@dataclass(frozen=True)
class RoutingTrial:
    """One instance and the routing decision it gets."""

    source: str  # the file, or Orthanc's instance id
    tags: InstanceTags
    decision: RoutingDecision

    def view(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "SOPInstanceUID": self.tags.SOPInstanceUID,
            "Modality": self.tags.Modality,
            "SOPClassUID": self.tags.SOPClassUID,
            "PresentationIntentType": self.tags.PresentationIntentType,
            "decision": self.decision.decision,
            "rule": self.decision.code,
            "reason": self.decision.reason,
        }


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)  # as Orthanc's simplified tags give it
    return str(value).strip() if value is not None else ""


def tags_of_file(path: Path) -> InstanceTags:
    """The header fields routing reads, from a DICOM file (pixel data not read)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return InstanceTags(
        orthanc_id="",
        SOPInstanceUID=_text(ds, "SOPInstanceUID"),
        SOPClassUID=_text(ds, "SOPClassUID"),
        SeriesInstanceUID=_text(ds, "SeriesInstanceUID"),
        StudyInstanceUID=_text(ds, "StudyInstanceUID"),
        Modality=_text(ds, "Modality"),
        PresentationIntentType=_text(ds, "PresentationIntentType"),
        Manufacturer=_text(ds, "Manufacturer"),
        header={k: _text(ds, k) for k in MR_ROUTING_KEYWORDS if k in ds},
    )


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def try_files(paths: Iterable[Path], rules: RoutingRules) -> list[RoutingTrial]:
    """Route every DICOM file (folders recursively); a file that is not DICOM is ignored
    with that reason."""
    trials = []
    for file in _files(paths):
        try:
            tags = tags_of_file(file)
        except (InvalidDicomError, OSError) as error:
            empty = InstanceTags("", "", "", "", "", "", "", "")
            decision = RoutingDecision(False, "unreadable", f"not a DICOM file: {error}")
            trials.append(RoutingTrial(str(file), empty, decision))
            continue
        trials.append(RoutingTrial(str(file), tags, route(tags, rules)))
    return trials


def try_study(
    orthanc: OrthancRest, study_instance_uid: str, rules: RoutingRules
) -> list[RoutingTrial]:
    """Route every instance Orthanc holds of one study."""
    trials = []
    for orthanc_id in orthanc.find_instances(study_instance_uid):
        tags = orthanc.instance_tags(orthanc_id)
        trials.append(RoutingTrial(orthanc_id, tags, route(tags, rules)))
    return trials
