"""The MR summary as DICOM: a Secondary Capture image and an Encapsulated PDF of one page.

The page (:mod:`node.mri.summary_page`) is drawn once per language and written twice:
rasterised for the SC (PS3.3 A.8.1), for viewers that show images only, and as PDF with
TrueType fonts for the Encapsulated PDF (PS3.3 A.45.1), for those that show documents. No
patient identifier is drawn (the headers carry them), so Burned In Annotation is NO in both.
"""

from __future__ import annotations

import datetime
import io
import threading
from collections.abc import Sequence
from typing import Final

import highdicom as hd
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian

from node.dicom.uids import derive_uid
from node.mri.assembly import DceExam
from node.mri.kinetics import KineticResult
from node.mri.scoring import KINETIC_CAD, RULE_SCORER, KineticScorer
from node.mri.summary_page import catalogues, render_mri_summary
from node.writers.locales import DEFAULT_LANGUAGE
from node.writers.provenance import (
    NODE_DEVICE_SERIAL_NUMBER,
    NODE_MANUFACTURER,
    NODE_MODEL_NAME,
    NODE_SOFTWARE_VERSION,
    contributing_equipment,
    equipment_arguments,
)
from node.writers.report_pdf import copy_patient_and_study
from node.writers.summary import UTF8

__all__ = [
    "MRI_PDF_SERIES_NUMBER",
    "MRI_SC_SERIES_NUMBER",
    "build_mri_summary",
    "build_mri_summary_pdf",
    "summary_outputs",
]

MRI_SC_SERIES_NUMBER: Final = 9404
MRI_PDF_SERIES_NUMBER: Final = 9405
_DPI: Final = 110  # the SC: 910 x 1286 pixels
# rcParams are process-wide and workers are threads: one PDF is drawn at a time.
_MATPLOTLIB_LOCK: Final = threading.Lock()


def _uid(exam: DceExam, scorer: KineticScorer, *kind: str) -> str:
    # Language and scorer are part of the identity: each is its own instance; a revision is
    # a new version of the results (revision 0 keeps its own UIDs, as the other MR outputs).
    revision = (f"revision {exam.revision}",) if exam.revision > 0 else ()
    return derive_uid(
        exam.StudyInstanceUID,
        KINETIC_CAD.model_id,
        KINETIC_CAD.version,
        scorer.spec.model_id,
        scorer.spec.version,
        *kind,
        *revision,
    )


def build_mri_summary(
    exam: DceExam,
    result: KineticResult,
    scorer: KineticScorer = RULE_SCORER,
    language: str = DEFAULT_LANGUAGE,
) -> hd.sc.SCImage:
    """Secondary Capture Image (PS3.3 A.8.1) of the summary page, in ``language``."""
    mri, _ = catalogues(language)
    figure = render_mri_summary(exam, result, scorer, language)
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(_DPI)
    canvas.draw()  # type: ignore[no-untyped-call]  # matplotlib's Agg canvas is untyped
    rgba = canvas.buffer_rgba()  # type: ignore[no-untyped-call]
    pixels = np.ascontiguousarray(np.asarray(rgba)[..., :3])
    reference = exam.phases[1].slices[0]
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=_uid(exam, scorer, "summary SC series", language),
        series_number=MRI_SC_SERIES_NUMBER,
        sop_instance_uid=_uid(exam, scorer, "summary SC", language),
        instance_number=1,
        # highdicom requires an orientation for PATIENT; replaced below by an empty value.
        patient_orientation=("L", "P"),
        series_description="AI MRI summary image (not for clinical use)",
        specific_character_set=UTF8,
        **equipment_arguments(KINETIC_CAD),
    )
    # A page of plots has no single Patient Orientation: Type 2C, present and empty
    # (PS3.3 C.7.6.1.1.1); both breasts are on it, so Laterality stays empty as the source's.
    image.add_new("PatientOrientation", "CS", None)
    image.Laterality = reference.get("Laterality", "")
    image.BurnedInAnnotation = "NO"
    image.DerivationDescription = (
        f"{KINETIC_CAD.name} {KINETIC_CAD.version} kinetic results drawn by {NODE_MANUFACTURER} "
        f"({language}); not for clinical use"
    )[:1024]
    image.SourceImageSequence = DicomSequence(_references(exam, result))
    image.ImageComments = mri.text("title")
    return image


def _references(exam: DceExam, result: KineticResult, *, frames: bool = True) -> list[Dataset]:
    """The first post-contrast slices shown as thumbnails (or its first, when none); with
    ``frames``, a frame of a multi-frame image is named by its Referenced Frame Number."""
    shown = sorted(
        {min(round(c.centroid[0]), len(exam.phases[1].slices) - 1) for c in result.candidates}
    ) or [0]
    items = [exam.phases[1].reference(index) for index in shown]
    if frames:
        return items
    unique = {str(item.ReferencedSOPInstanceUID): item for item in items}
    for item in unique.values():
        if "ReferencedFrameNumber" in item:
            del item.ReferencedFrameNumber
    return list(unique.values())


def _pdf_bytes(figure: Figure, title: str) -> bytes:
    buffer = io.BytesIO()
    with _MATPLOTLIB_LOCK, matplotlib.rc_context({"pdf.fonttype": 42, "pdf.compression": 6}):
        figure.savefig(
            buffer,
            format="pdf",
            metadata={
                "Title": title,
                "Creator": NODE_MANUFACTURER,
                "Producer": NODE_MANUFACTURER,
                "CreationDate": None,
            },
        )
    return buffer.getvalue()


def build_mri_summary_pdf(
    exam: DceExam,
    result: KineticResult,
    scorer: KineticScorer = RULE_SCORER,
    language: str = DEFAULT_LANGUAGE,
) -> Dataset:
    """Encapsulated PDF (PS3.3 A.45.1) of the summary page, in ``language``."""
    mri, _ = catalogues(language)
    document = _pdf_bytes(render_mri_summary(exam, result, scorer, language), mri.text("title"))
    source = exam.phases[1].slices[0]
    now = datetime.datetime.now()
    uid = _uid(exam, scorer, "summary PDF", language)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = UTF8  # SOP Common (C.12.1): the translated title
    ds.SOPClassUID, ds.SOPInstanceUID = EncapsulatedPDFStorage, uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = (
        now.strftime("%Y%m%d"),
        now.strftime("%H%M%S"),
    )
    ds.ContributingEquipmentSequence = DicomSequence([contributing_equipment(KINETIC_CAD)])
    copy_patient_and_study(source, ds)  # Patient and General Study, as in the source
    # Encapsulated Document Series (C.24.1) and General Equipment (C.7.5.1)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = _uid(exam, scorer, "summary PDF series", language)
    ds.SeriesNumber = MRI_PDF_SERIES_NUMBER
    ds.SeriesDescription = "AI MRI report PDF (not for clinical use)"
    ds.Manufacturer, ds.ManufacturerModelName = NODE_MANUFACTURER, NODE_MODEL_NAME
    ds.DeviceSerialNumber, ds.SoftwareVersions = NODE_DEVICE_SERIAL_NUMBER, NODE_SOFTWARE_VERSION
    ds.ConversionType = "WSD"  # SC Equipment (C.8.6.1): made by software
    # Encapsulated Document (C.24.2)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "NO"  # the page names no patient
    # SOP Instance Reference Macro (PS3.3 C.12.1): the instance only, no frame number
    ds.SourceInstanceSequence = DicomSequence(_references(exam, result, frames=False))
    ds.DocumentTitle = mri.text("document_title")
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.VerificationFlag = "UNVERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    # C.24.2.1: odd-length documents get one trailing NULL; the length excludes it.
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + b"\x00" * (len(document) % 2)
    return ds


def summary_outputs(
    exam: DceExam,
    result: KineticResult,
    scorer: KineticScorer = RULE_SCORER,
    languages: Sequence[str] = (DEFAULT_LANGUAGE,),
) -> list[Dataset]:
    """The SC and the PDF in each of ``languages``."""
    outputs: list[Dataset] = []
    for language in languages:
        outputs.append(build_mri_summary(exam, result, scorer, language))
        outputs.append(build_mri_summary_pdf(exam, result, scorer, language))
    return outputs
