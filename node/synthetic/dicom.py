"""Synthetic Digital Mammography X-Ray images, valid enough for dciodvfy and real viewers.

Tests and demos need a screening exam that looks like what a mammography unit sends
(PS3.3 A.26.1 Digital Mammography X-Ray Image IOD) without shipping patient data. The
pixels come from :mod:`node.synthetic.phantom`; this module only wraps them in DICOM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from node.dicom.uids import derive_uid, is_valid_uid
from node.domain import Finding, Laterality
from node.synthetic.phantom import make_phantom
from node.synthetic.phantom import patient_orientation as view_orientation

__all__ = [
    "MG_FOR_PRESENTATION",
    "MG_FOR_PROCESSING",
    "SCREENING_VIEWS",
    "SYNTHETIC_MANUFACTURER",
    "mammogram_dataset",
    "synthetic_exam",
    "write_exam",
]

MG_FOR_PRESENTATION: Final = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING: Final = "1.2.840.10008.5.1.4.1.1.1.2.1"
SYNTHETIC_MANUFACTURER: Final = "mammo-node synthetic phantom"
ViewPosition = Literal["CC", "MLO"]
SCREENING_VIEWS: Final[tuple[tuple[Laterality, ViewPosition], ...]] = (
    ("R", "CC"),
    ("L", "CC"),
    ("R", "MLO"),
    ("L", "MLO"),
)

BITS_STORED: Final = 12

# CID 4014 View for Mammography (SNOMED CT), used in View Code Sequence (PS3.3 C.8.11.7).
_VIEW_CODES: Final = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _check_arguments(
    pixels: npt.NDArray[np.generic], laterality: str, view: str, uids: dict[str, str]
) -> None:
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError(
            "pixels must be a 2-D uint16 array: MG images are single-frame MONOCHROME2 "
            f"with Bits Allocated 16 (PS3.3 C.8.11.7), got {pixels.ndim}-D {pixels.dtype}"
        )
    if pixels.size and int(pixels.max()) >= 1 << BITS_STORED:
        raise ValueError(f"pixel values must fit Bits Stored {BITS_STORED} (PS3.3 C.7.6.3.1.1)")
    if laterality not in ("L", "R"):
        raise ValueError(
            f"Image Laterality must be 'L' or 'R' (PS3.3 C.8.11.7), not {laterality!r}"
        )
    if view not in _VIEW_CODES:
        raise ValueError(f"View Position must be one of {sorted(_VIEW_CODES)}, not {view!r}")
    for name, uid in uids.items():
        if not is_valid_uid(uid):
            raise ValueError(f"{name} {uid!r} is not a valid UID (PS3.5 9.1)")


def mammogram_dataset(
    pixels: npt.NDArray[np.uint16],
    *,
    laterality: str,
    view: str,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    for_processing: bool = False,
    accession_number: str = "",
    study_date: str = "20240102",
    study_time: str = "093000",
    study_id: str = "1",
    series_number: int = 1,
    pixel_spacing_mm: float = 0.2,
    patient_birth_date: str = "19700101",
    patient_orientation: tuple[str, str] | None = None,
) -> Dataset:
    """One Digital Mammography X-Ray image (PS3.3 A.26.1) around ``pixels``.

    ``pixels`` are 12 bits stored in 16, MONOCHROME2 (higher value = brighter = denser).
    """
    _check_arguments(
        pixels,
        laterality,
        view,
        {
            "StudyInstanceUID": study_instance_uid,
            "SeriesInstanceUID": series_instance_uid,
            "SOPInstanceUID": sop_instance_uid,
        },
    )
    sop_class_uid = MG_FOR_PROCESSING if for_processing else MG_FOR_PRESENTATION
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    # SOP Common (PS3.3 C.12.1)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    # Patient (C.7.1.1)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = "F"
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study_id
    ds.AccessionNumber = accession_number
    ds.StudyDescription = "Screening mammography (synthetic)"
    # General Series, DX Series, Mammography Series (C.7.3.1, C.8.11.1, C.8.11.6)
    ds.Modality = "MG"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Synthetic phantom (not for clinical use)"
    ds.PresentationIntentType = "FOR PROCESSING" if for_processing else "FOR PRESENTATION"
    # General Equipment (C.7.5.1)
    ds.Manufacturer = SYNTHETIC_MANUFACTURER
    ds.ManufacturerModelName = "phantom"
    ds.SoftwareVersions = "1"
    # General Image, General Acquisition (C.7.6.1, C.7.10.1)
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = list(patient_orientation or view_orientation(laterality, view))
    ds.ContentDate = study_date
    ds.ContentTime = study_time
    ds.AcquisitionDate = study_date
    ds.AcquisitionTime = study_time
    # DX Image (C.8.11.3), Mammography Image (C.8.11.7): Value 3 is empty for a 2-D view
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"  # C.8.11.3.1.2: MONOCHROME2 uses IDENTITY
    # Image Pixel (C.7.6.3)
    rows, columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    # VOI LUT (C.11.2): required For Presentation (A.26.1 VOI LUT module condition)
    if not for_processing:
        ds.WindowCenter = 1 << (BITS_STORED - 1)
        ds.WindowWidth = 1 << BITS_STORED
        ds.VOILUTFunction = "LINEAR"
    # DX Detector (C.8.11.4) and DX Positioning (C.8.11.5)
    spacing = [f"{pixel_spacing_mm:g}", f"{pixel_spacing_mm:g}"]
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = spacing
    ds.PixelSpacing = spacing
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Synthetic phantom, no magnification"
    ds.EstimatedRadiographicMagnificationFactor = 1
    ds.DistanceSourceToDetector = 660
    ds.DistanceSourceToPatient = 660
    ds.BodyPartExamined = "BREAST"
    ds.PositionerPrimaryAngle = 0 if view == "CC" else (45 if laterality == "R" else -45)
    # DX Anatomy Imaged (C.8.11.2) and Mammography Image (C.8.11.7)
    ds.ImageLaterality = laterality
    ds.AnatomicRegionSequence = DicomSequence([_code("76752008", "SCT", "Breast")])
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.OrganExposed = "BREAST"
    ds.ViewPosition = view
    view_item = _code(_VIEW_CODES[view][0], "SCT", _VIEW_CODES[view][1])
    view_item.ViewModifierCodeSequence = DicomSequence()
    ds.ViewCodeSequence = DicomSequence([view_item])
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    # Acquisition Context (C.7.6.14): Type 2, empty means "nothing recorded"
    ds.AcquisitionContextSequence = DicomSequence()
    return ds


def _phantom(
    seed: int,
    rows: int,
    columns: int,
    laterality: Laterality,
    view: ViewPosition,
    lesions: int,
    calcifications: int,
) -> tuple[npt.NDArray[np.uint16], tuple[Finding, ...]]:
    phantom = make_phantom(
        seed=seed,
        rows=rows,
        columns=columns,
        laterality=laterality,
        view=view,
        lesions=lesions,
        calcifications=calcifications,
        bits_stored=BITS_STORED,
    )
    return phantom.pixels, tuple(phantom.lesions)


def synthetic_exam(
    seed: int,
    *,
    rows: int = 1024,
    columns: int = 832,
    lesions_per_image: int | Sequence[int] = 1,
    calcifications_per_image: int | Sequence[int] = 0,
    patient_id: str | None = None,
    for_processing: bool = False,
) -> list[tuple[Dataset, tuple[Finding, ...]]]:
    """The four screening views (R/L x CC/MLO) of one study, with the lesions drawn in.

    Every UID derives from ``seed``, so the same seed always gives the same study.
    Per-view counts may be given as a sequence in :data:`SCREENING_VIEWS` order.
    """
    lesions = _per_view(lesions_per_image, "lesions_per_image")
    calcs = _per_view(calcifications_per_image, "calcifications_per_image")
    pid = patient_id or f"SYNTH{seed:06d}"
    kind = "FOR PROCESSING" if for_processing else "FOR PRESENTATION"
    study_uid = derive_uid("mammo-node synthetic study", str(seed))
    series_uid = derive_uid(study_uid, "series", kind)
    exam: list[tuple[Dataset, tuple[Finding, ...]]] = []
    for index, (laterality, view) in enumerate(SCREENING_VIEWS):
        pixels, findings = _phantom(
            seed * 4 + index, rows, columns, laterality, view, lesions[index], calcs[index]
        )
        ds = mammogram_dataset(
            pixels,
            laterality=laterality,
            view=view,
            patient_id=pid,
            patient_name=f"Synthetic^Phantom{seed}",
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            sop_instance_uid=derive_uid(series_uid, laterality, view),
            instance_number=index + 1,
            for_processing=for_processing,
            accession_number=f"ACC{seed:06d}",
        )
        exam.append((ds, findings))
    return exam


def _per_view(value: int | Sequence[int], name: str) -> tuple[int, ...]:
    counts = (value,) * len(SCREENING_VIEWS) if isinstance(value, int) else tuple(value)
    if len(counts) != len(SCREENING_VIEWS) or any(c < 0 for c in counts):
        raise ValueError(f"{name} must be a count >= 0 or one per view of {SCREENING_VIEWS}")
    return counts


def write_exam(
    directory: str | Path,
    seed: int,
    *,
    rows: int = 1024,
    columns: int = 832,
    lesions_per_image: int | Sequence[int] = 1,
    calcifications_per_image: int | Sequence[int] = 0,
    patient_id: str | None = None,
    for_processing: bool = False,
) -> list[Path]:
    """Write :func:`synthetic_exam` as Part 10 files named after their view; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    exam = synthetic_exam(
        seed,
        rows=rows,
        columns=columns,
        lesions_per_image=lesions_per_image,
        calcifications_per_image=calcifications_per_image,
        patient_id=patient_id,
        for_processing=for_processing,
    )
    paths: list[Path] = []
    for ds, _findings in exam:
        path = directory / f"{ds.ImageLaterality}{ds.ViewPosition}-{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
