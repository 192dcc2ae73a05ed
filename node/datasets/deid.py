"""De-identification of DICOM on the way into a dataset.

DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile (Table E.1-1), for the
attributes a mammogram carries. Actions (PS3.15 E.3.1):
D replace with a dummy value of the same VR; Z replace with zero length (or a consistent
dummy: patient ids become pseudonyms, so one woman's images stay together); X remove;
K keep; C clean (keep the text minus the identifying values this object holds; only with the
"Clean Descriptors" option, otherwise such descriptors are removed: X); U replace a UID by
another one, the same everywhere in the import. Private tags are removed (E.3.1: the Basic
Profile retains none). Sequences are processed recursively.

The re-identification key (pseudonym -> original) is kept apart from the dataset: only the
person who holds that file can link results back to a patient.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

from node.dicom.uids import derive_uid
from node.errors import DatasetError

DEID_METHOD = "PS3.15 Annex E Basic Profile (mammo-node)"  # LO: 64 chars at most

# PS3.15 Table E.1-1, Basic Profile column, attributes seen in MG / DX objects.
_BASIC: dict[str, str] = {
    # Patient
    "PatientName": "Z",
    "PatientID": "Z",  # dummy = consistent pseudonym
    "PatientBirthDate": "Z",
    "PatientSex": "Z",
    "PatientBirthTime": "X",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientNames": "X",
    "OtherPatientIDsSequence": "X",
    "EthnicGroup": "X",
    "PregnancyStatus": "X",
    "AdditionalPatientHistory": "X",
    "PatientComments": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "MedicalRecordLocator": "X",
    "AdmissionID": "X",
    "ReferencedPatientSequence": "X",
    # Study / visit
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "StudyDate": "Z",
    "StudyTime": "Z",
    "ContentDate": "Z",
    "ContentTime": "Z",
    "SeriesDate": "X",
    "SeriesTime": "X",
    "AcquisitionDate": "X",
    "AcquisitionTime": "X",
    "AcquisitionDateTime": "X",
    "InstanceCreationDate": "X",
    "InstanceCreationTime": "X",
    "TimezoneOffsetFromUTC": "X",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "PhysiciansOfRecord": "X",
    "PerformingPhysicianName": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "OperatorsName": "X",
    "RequestingPhysician": "X",
    "RequestAttributesSequence": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureDescription": "X",
    "StudyComments": "X",
    "AdmittingDiagnosesDescription": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "PerformedStationAETitle": "X",
    "PerformedStationName": "X",
    "PerformedLocation": "X",
    "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    # Equipment / institution
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionCodeSequence": "X",
    "InstitutionalDepartmentName": "X",
    "StationName": "X",
    "DeviceSerialNumber": "X",
    "DateOfLastCalibration": "X",
    "TimeOfLastCalibration": "X",
    "DateOfLastDetectorCalibration": "X",
    "TimeOfLastDetectorCalibration": "X",
    "DetectorID": "D",
    "ProtocolName": "X",
    "AcquisitionProtocolDescription": "X",
    # Free text (cleaned with the Clean Descriptors option)
    "StudyDescription": "X",
    "SeriesDescription": "X",
    "ImageComments": "X",
    "DerivationDescription": "X",
    # Content / observers
    "ContentSequence": "X",
    "VerifyingObserverName": "D",
    "PersonName": "D",
    "OriginalAttributesSequence": "X",
    "IconImageSequence": "X",
    # UIDs
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "InstanceCreatorUID": "U",
    "DeviceUID": "U",
    "UID": "U",
    "StorageMediaFileSetUID": "U",
    "IrradiationEventUID": "U",
}
_CLEANABLE = {"StudyDescription", "SeriesDescription", "ImageComments", "DerivationDescription"}
ACTIONS = frozenset("DZXKCU")
_DUMMY_BY_VR = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
}


def profile(clean_descriptors: bool = False) -> dict[int, str]:
    """Action per tag; free-text descriptors are C with the option, X without it."""
    table: dict[int, str] = {}
    for keyword, action in _BASIC.items():
        if action not in ACTIONS:
            raise ValueError(f"unknown PS3.15 action {action!r} for {keyword}")
        if clean_descriptors and keyword in _CLEANABLE:
            action = "C"
        table[int(Tag(keyword))] = action
    return table


@dataclass
class Pseudonymiser:
    """Consistent replacements within one import, keyed by a secret that is not stored.

    Without the secret (or the re-identification key file) pseudonyms cannot be reversed or
    recomputed from an original id.
    """

    secret: bytes
    mapping: dict[tuple[str, str], str] = field(default_factory=dict)

    def patient(self, original: str) -> str:
        key = ("PatientID", original)
        if key not in self.mapping:
            mac = hmac.new(self.secret, original.encode("utf-8"), hashlib.sha256).hexdigest()
            self.mapping[key] = f"P{mac[:10].upper()}"
        return self.mapping[key]

    def uid(self, keyword: str, original: str) -> str:
        key = ("UID", original)
        if key not in self.mapping:
            self.mapping[key] = derive_uid("mammo-node deid", self.secret.hex(), original)
        return self.mapping[key]

    def write_key(self, path: Path) -> None:
        """The re-identification key: kind, original, pseudonym (keep it apart and safe)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "original", "pseudonym"])
            for (kind, original), pseudonym in sorted(self.mapping.items()):
                writer.writerow([kind, original, pseudonym])


def _identifiers(ds: Dataset) -> list[str]:
    values: list[str] = []
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate"):
        value = str(ds.get(keyword, "") or "").strip()
        values.extend(part for part in re.split(r"[\^ ]+", value) if len(part) >= 3)
    return values


def _clean(text: str, identifiers: list[str]) -> str:
    for value in identifiers:
        text = re.sub(re.escape(value), "", text, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", text).strip()


def _walk(ds: Dataset) -> Iterator[tuple[Dataset, DataElement]]:
    for element in list(ds):
        yield ds, element
        if element.VR == "SQ" and element.value is not None:
            for item in element.value:
                yield from _walk(item)


def deidentify(ds: Dataset, pseudonyms: Pseudonymiser, clean_descriptors: bool = False) -> str:
    """De-identify ``ds`` in place; return the patient pseudonym.

    Raises ``DatasetError`` when the object has no Patient ID to pseudonymise consistently.
    """
    original_patient = str(ds.get("PatientID", "") or "").strip()
    if not original_patient:
        raise DatasetError("no Patient ID (0010,0020): images cannot be grouped by patient")
    pseudonym = pseudonyms.patient(original_patient)
    identifiers = _identifiers(ds)
    actions = profile(clean_descriptors)
    ds.remove_private_tags()
    removals: list[tuple[Dataset, BaseTag]] = []
    for parent, element in _walk(ds):
        action = actions.get(int(element.tag), "K")
        if action == "K" or element.tag.is_private:
            continue
        if action == "X":
            removals.append((parent, element.tag))
        elif action == "Z":
            element.value = pseudonym if element.keyword == "PatientID" else ""
        elif action == "D":
            element.value = _DUMMY_BY_VR.get(element.VR, "ANONYMOUS")
        elif action == "C":
            element.value = _clean(str(element.value or ""), identifiers)
        elif action == "U" and element.value:
            if element.VM > 1:
                element.value = [pseudonyms.uid(element.keyword, str(v)) for v in element.value]
            else:
                element.value = pseudonyms.uid(element.keyword, str(element.value))
    for parent, tag in removals:
        if tag in parent:
            del parent[tag]
    if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD
    code = Dataset()
    code.CodeValue = "113100"  # CID 7050: Basic Application Confidentiality Profile
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    codes = [code]
    if clean_descriptors:
        clean = Dataset()
        clean.CodeValue = "113105"
        clean.CodingSchemeDesignator = "DCM"
        clean.CodeMeaning = "Clean Descriptors Option"
        codes.append(clean)
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    return pseudonym
