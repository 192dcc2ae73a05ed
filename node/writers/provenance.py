"""Who made a result, as IHE AI Results (AIR) asks, and the UIDs that make results idempotent.

Every object the node writes names the node as its equipment (so the node can recognise and
skip its own outputs) and the model version in Contributing Equipment and in Algorithm
Identification, so a reader can tell which algorithm produced what.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import highdicom as hd
from pydicom.sr.coding import Code

from node import __version__
from node.dicom.uids import derive_uid, is_valid_uid
from node.domain import ExamResult, ModelSpec

__all__ = [
    "NODE_DEVICE_SERIAL_NUMBER",
    "NODE_MANUFACTURER",
    "NODE_MODEL_NAME",
    "NODE_SOFTWARE_VERSION",
    "NOT_FOR_CLINICAL_USE",
    "PROCESSING_EQUIPMENT",
    "algorithm_identification",
    "contributing_equipment",
    "equipment_arguments",
    "output_uid",
    "series_number",
    "sr_algorithm_identification",
]

# The node filters its own outputs by this General Equipment Manufacturer (0008,0070).
NODE_MANUFACTURER: Final = "mammo-node"
NODE_MODEL_NAME: Final = "mammo-node"
NODE_SOFTWARE_VERSION: Final = __version__
NODE_DEVICE_SERIAL_NUMBER: Final = "mammo-node"  # Type 1 in Enhanced General Equipment
NOT_FOR_CLINICAL_USE: Final = "not for clinical use"

# CID 7005 Contributing Equipment Purpose of Reference: the model processed the images.
PROCESSING_EQUIPMENT: Final = Code("109102", "DCM", "Processing Equipment")


def _check_model(model: ModelSpec) -> None:
    if not model.name or not model.version or not model.manufacturer:
        raise ValueError(
            "the model needs a name, version and manufacturer: Contributing Equipment "
            "Manufacturer is Type 1 and AIR asks for the algorithm's name and version"
        )
    if not is_valid_uid(model.device_uid):
        raise ValueError(f"model device_uid {model.device_uid!r} is not a valid UID (PS3.5 9.1)")


def output_uid(exam: ExamResult, kind: str, source_sop_instance_uid: str | None = None) -> str:
    """UID of one output: the same exam, model version and output kind always give the same."""
    parts = [exam.StudyInstanceUID, exam.model.model_id, exam.model.version, kind]
    if exam.revision > 0:
        # A re-analysis after late images is a new version: new UIDs (revision 0 keeps the
        # UIDs it always had, so existing results stay idempotent).
        parts.append(f"revision {exam.revision}")
    if source_sop_instance_uid is not None:
        parts.append(source_sop_instance_uid)
    return derive_uid(*parts)


def series_number(first: int, index: int) -> int:
    """Series Number of the ``index``-th (0-based) series of a per-image or per-breast kind.

    Every result series gets its own number, so a viewer's series list tells them apart:
    per-image kinds count up from their ``first`` (SEG 9201.., heatmap SEG 9301..), which
    leaves room for 99 images before the next kind's range.
    """
    if not 0 <= index < 99:
        raise ValueError(f"series index {index} outside 0..98: Series Numbers would collide")
    return first + index


def contributing_equipment(model: ModelSpec) -> hd.ContributingEquipment:
    """Contributing Equipment Sequence item for the model version (PS3.3 C.12.1, IHE AIR)."""
    _check_model(model)
    item = hd.ContributingEquipment(
        manufacturer=model.manufacturer,
        purpose_of_reference=PROCESSING_EQUIPMENT,
        manufacturer_model_name=model.name,
        software_versions=model.version,
        contribution_description=f"{model.intended_use} ({NOT_FOR_CLINICAL_USE})"[:64],
        # When the model's contribution was made (PS3.3 C.12.1, Type 3; IHE AIR asks for it):
        # the object is built right after inference, so its build time, in UTC.
        contribution_datetime=datetime.now(UTC).replace(microsecond=0),
    )
    item.DeviceUID = model.device_uid  # AIR: one device UID per model version
    return item


def equipment_arguments(model: ModelSpec) -> dict[str, Any]:
    """The node's General Equipment and the model's Contributing Equipment, as the keyword
    arguments highdicom's SEG, GSPS and SC constructors take: one place says who made an object."""
    return {
        "manufacturer": NODE_MANUFACTURER,
        "manufacturer_model_name": NODE_MODEL_NAME,
        "software_versions": NODE_SOFTWARE_VERSION,
        "device_serial_number": NODE_DEVICE_SERIAL_NUMBER,
        "contributing_equipment": [contributing_equipment(model)],
    }


def algorithm_identification(model: ModelSpec) -> hd.AlgorithmIdentificationSequence:
    """Segment Algorithm Identification (PS3.3 C.8.20.2, 10.16) for SEG segments."""
    _check_model(model)
    return hd.AlgorithmIdentificationSequence(
        name=model.name,
        family=Code("123110", "DCM", "Artificial Intelligence"),  # CID 7162
        version=model.version,
        source=model.manufacturer,
    )


def sr_algorithm_identification(model: ModelSpec) -> hd.sr.AlgorithmIdentification:
    """TID 4019 Algorithm Identification for SR measurement groups."""
    _check_model(model)
    return hd.sr.AlgorithmIdentification(name=model.name, version=model.version)
