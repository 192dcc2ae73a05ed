"""Fetch studies from a PACS over DICOMweb (QIDO-RS + WADO-RS) into a folder that
``mammo-node data import --format dicom`` then de-identifies and checks.

Files are named by counters, never by UIDs or patient data, and the import step is the one
place de-identification happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from node.errors import InvalidInput
from node.net.dicomweb import DicomWebClient


@dataclass
class FetchOutcome:
    files: list[Path] = field(default_factory=list)
    missing_studies: list[str] = field(default_factory=list)  # QIDO found no instance
    failed: list[tuple[str, str]] = field(default_factory=list)  # (SOPInstanceUID, reason)


def fetch_studies(
    client: DicomWebClient, study_instance_uids: Sequence[str], out: Path, *, progress: bool = True
) -> FetchOutcome:
    """Retrieve every instance of each study into ``out/study-NNNN/NNNN.dcm``."""
    out.mkdir(parents=True, exist_ok=True)
    outcome = FetchOutcome()
    for study_index, study_uid in enumerate(study_instance_uids, start=1):
        instances = client.search_instances(study_uid)
        if not instances:
            outcome.missing_studies.append(study_uid)
            continue
        folder = out / f"study-{study_index:04d}"
        folder.mkdir(exist_ok=True)
        bar = tqdm(
            instances,
            desc=f"study {study_index}/{len(study_instance_uids)}",
            unit="image",
            disable=not progress,
        )
        for number, (series_uid, sop_uid) in enumerate(bar, start=1):
            try:
                dataset = client.retrieve_instance(study_uid, series_uid, sop_uid)
            except InvalidInput as error:
                outcome.failed.append((sop_uid, str(error)))
                continue
            path = folder / f"{number:04d}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            outcome.files.append(path)
    return outcome
