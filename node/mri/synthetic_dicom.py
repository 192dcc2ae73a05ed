"""The DCE phantom as a breast MRI study: classic MR Image Storage, one series per phase
(or, with ``enhanced``, the phases as Enhanced MR: node.mri.synthetic_enhanced).

What a scanner sends for a DCE exam (PS3.3 A.4 MR Image IOD): a pre-contrast series and N
post-contrast series (Temporal Position Identifier, Acquisition Time; Trigger Time only on cardiac-gated scans), plus
series the kinetic analysis must recognise and skip: a T2-weighted series and a
subtraction series (ImageType DERIVED\\SECONDARY\\SUBTRACTION).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from node.dicom.uids import derive_uid
from node.mri.phantom import BITS_STORED, DcePhantom, make_dce_phantom
from node.mri.synthetic_enhanced import EnhancedPhase, enhanced_mr_image

__all__ = ["MR_IMAGE_STORAGE", "SYNTHETIC_MANUFACTURER", "dce_study", "mr_slice", "write_dce_exam"]

MR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.4"
SYNTHETIC_MANUFACTURER: Final = "mammo-node synthetic phantom"
_STUDY_TIME_S: Final = 9 * 3600 + 30 * 60  # 09:30:00, the pre-contrast acquisition


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}"


def mr_slice(
    pixels: npt.NDArray[np.uint16],
    *,
    series: dict[str, object],
    study_uid: str,
    frame_of_reference_uid: str,
    patient_id: str,
    index: int,
    spacing: tuple[float, float],
    position_z: float,
) -> Dataset:
    """One axial slice (PS3.3 A.4); ``series`` holds the per-series header values."""
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError("an MR slice is a 2-D uint16 array (MONOCHROME2, Bits Allocated 16)")
    if pixels.size and int(pixels.max()) >= 1 << BITS_STORED:
        raise ValueError(f"pixel values must fit Bits Stored {BITS_STORED} (PS3.3 C.7.6.3.1.1)")
    series_uid = str(series["SeriesInstanceUID"])
    sop_uid = derive_uid(series_uid, "slice", str(index))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(MR_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, sop_uid
    ds.PatientName, ds.PatientID = "Phantom^DCE", patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, "20240102", _clock(_STUDY_TIME_S)
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.StudyDescription = "Breast MRI DCE (synthetic)"
    ds.Modality = "MR"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, series["SeriesNumber"]
    ds.SeriesDescription = series["SeriesDescription"]
    ds.BodyPartExamined = "BREAST"
    ds.Laterality = ""  # Type 2C for a paired part: empty, both breasts are imaged
    ds.PatientPosition = "FFP"  # prone, feet first: breast coils
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = SYNTHETIC_MANUFACTURER, "phantom"
    ds.SoftwareVersions = "1"
    ds.InstanceNumber = index + 1
    ds.ContentDate = ds.AcquisitionDate = "20240102"
    ds.ContentTime = ds.AcquisitionTime = _clock(_STUDY_TIME_S + float(series["time_s"]))  # type: ignore[arg-type]
    ds.ImageType = series["ImageType"]
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    # Image Plane (C.7.6.2): canonical axial, rows to the left (+x), columns posterior (+y)
    ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[0]:g}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    rows, columns = pixels.shape
    ds.ImagePositionPatient = [
        f"{-columns * spacing[0] / 2:g}",
        f"{-rows * spacing[0] / 2:g}",
        f"{position_z:g}",
    ]
    ds.SliceThickness = f"{spacing[1]:g}"
    ds.SliceLocation = f"{position_z:g}"
    # Image Pixel (C.7.6.3)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, BITS_STORED, 11, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 600, 1200
    # MR Image (C.8.3.1)
    for keyword in (
        "ScanningSequence",
        "SequenceVariant",
        "SequenceName",
        "EchoTime",
        "RepetitionTime",
    ):
        setattr(ds, keyword, series[keyword])
    ds.ScanOptions = series.get("ScanOptions", "")
    ds.MRAcquisitionType = "3D"
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = 1.5
    ds.ImagedNucleus = "1H"
    ds.SpacingBetweenSlices = f"{spacing[1]:g}"
    ds.FlipAngle = series.get("FlipAngle", 10)
    # Trigger Time is only for cardiac-gated scans (C.8.3.1, Type 2C): the phase time is in
    # Acquisition Time and Temporal Position Identifier, as non-gated breast DCE sends it.
    if "TemporalPositionIdentifier" in series:
        ds.TemporalPositionIdentifier = series["TemporalPositionIdentifier"]
        ds.NumberOfTemporalPositions = series["NumberOfTemporalPositions"]
    if series.get("contrast"):
        # Contrast/Bolus (C.7.6.4): the agent, Type 2 route; post-contrast phases only
        ds.ContrastBolusAgent = "Gadobutrol"
        ds.ContrastBolusAgentSequence = DicomSequence([_code("C0304234", "UMLS", "gadobutrol")])
        ds.ContrastBolusRoute = "IV"
    return ds


def _series(study_uid: str, number: int, description: str, **values: object) -> dict[str, object]:
    dce = {
        "ScanningSequence": "GR",
        "SequenceVariant": ["SP", "SS"],
        "SequenceName": "fl3d_vibe",
        "ScanOptions": "FS",
        "EchoTime": 2.0,
        "RepetitionTime": 5.0,
        "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
        "time_s": 0.0,
    }
    return {
        **dce,
        "SeriesInstanceUID": derive_uid(study_uid, "series", str(number)),
        "SeriesNumber": number,
        "SeriesDescription": description,
        **values,
    }


def _study_header(study_uid: str, frame_uid: str, patient_id: str) -> Dataset:
    """Patient, General Study and Frame of Reference attributes, shared by every object."""
    ds = Dataset()
    ds.PatientName, ds.PatientID = "Phantom^DCE", patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, "20240102", _clock(_STUDY_TIME_S)
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.StudyDescription = "Breast MRI DCE (synthetic)"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = SYNTHETIC_MANUFACTURER, "phantom"
    ds.SoftwareVersions = "1"
    return ds


def _enhanced_phases(
    phantom: DcePhantom, study_uid: str, header: Dataset, *, single_object: bool
) -> list[Dataset]:
    """The DCE phases as Enhanced MR: one object per phase, or one object of every phase."""
    spacing = (phantom.pixel_spacing_mm, phantom.slice_thickness_mm)
    z0 = -(phantom.phases.shape[1] - 1) * spacing[1] / 2
    phases = [
        EnhancedPhase(phantom.phases[k], k + 1, t, k > 0) for k, t in enumerate(phantom.times_s)
    ]
    groups = [phases] if single_object else [[p] for p in phases]
    objects = []
    for number, group in enumerate(groups, start=3):
        if single_object:
            description = "ax DCE dynamic"
        else:
            k = group[0].temporal_position - 1
            description = "ax DCE pre" if k == 0 else f"ax DCE post {k}"
        objects.append(
            enhanced_mr_image(
                group,
                header=header,
                series_uid=derive_uid(study_uid, "enhanced series", str(number)),
                series_number=number,
                description=description,
                spacing=spacing,
                z0=z0,
                start_s=_STUDY_TIME_S,
            )
        )
    return objects


def dce_study(
    seed: int = 1,
    phantom: DcePhantom | None = None,
    *,
    enhanced: bool = False,
    single_object: bool = False,
) -> tuple[list[Dataset], DcePhantom]:
    """Every image of the study (T2, DCE phases, one subtraction series), and the phantom.

    ``enhanced``: the DCE phases as Enhanced MR Image Storage (multi-frame), one object per
    phase, or one object holding every phase when ``single_object``; the T2 and subtraction
    series stay classic, as a mixed study from a scanner does.
    """
    phantom = phantom or make_dce_phantom(seed=seed)
    study_uid = derive_uid("mammo-node synthetic MR study", str(seed))
    frame_uid = derive_uid(study_uid, "frame of reference")
    spacing = (phantom.pixel_spacing_mm, phantom.slice_thickness_mm)
    n = len(phantom.times_s)
    plans: list[tuple[dict[str, object], npt.NDArray[np.uint16]]] = [
        (
            _series(
                study_uid,
                2,
                "ax T2 TSE",
                ScanningSequence="SE",
                SequenceVariant="SK",
                SequenceName="tse2d",
                ScanOptions="",
                EchoTime=90.0,
                RepetitionTime=4000.0,
                FlipAngle=90,
            ),
            phantom.t2,
        )
    ]
    for k, t in enumerate(phantom.times_s):
        description = "ax DCE pre" if k == 0 else f"ax DCE post {k}"
        values: dict[str, object] = {
            "TemporalPositionIdentifier": k + 1,
            "NumberOfTemporalPositions": n,
            "time_s": t,
            "contrast": k > 0,
        }
        if not enhanced:
            plans.append((_series(study_uid, 3 + k, description, **values), phantom.phases[k]))
    subtraction = np.clip(
        phantom.phases[1].astype(np.int32) - phantom.phases[0].astype(np.int32), 0, 4095
    ).astype(np.uint16)
    plans.append(
        (
            _series(
                study_uid,
                3 + n,
                "ax DCE SUB post 1",
                ImageType=["DERIVED", "SECONDARY", "SUBTRACTION"],
                time_s=phantom.times_s[1],
                contrast=True,
            ),
            subtraction,
        )
    )
    z0 = -(phantom.phases.shape[1] - 1) * spacing[1] / 2
    datasets: list[Dataset] = [
        mr_slice(
            volume[index],
            series=series,
            study_uid=study_uid,
            frame_of_reference_uid=frame_uid,
            patient_id=f"SYNTHMR{seed:06d}",
            index=index,
            spacing=spacing,
            position_z=z0 + index * spacing[1],
        )
        for series, volume in plans
        for index in range(volume.shape[0])
    ]
    if enhanced:
        header = _study_header(study_uid, frame_uid, f"SYNTHMR{seed:06d}")
        datasets += _enhanced_phases(phantom, study_uid, header, single_object=single_object)
    return datasets, phantom


def write_dce_exam(out: Path, seed: int = 1) -> list[Path]:
    """Write the synthetic DCE study as Part 10 files, one folder per series."""
    datasets, _ = dce_study(seed)
    paths = []
    for ds in datasets:
        folder = out / f"series{int(ds.SeriesNumber):03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
