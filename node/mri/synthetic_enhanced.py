"""The DCE phantom as Enhanced MR Image Storage (PS3.3 A.36.2): multi-frame, one frame a slice.

Modern scanners send the dynamic series as Enhanced MR: either one object per phase or one
object holding every phase, each frame placed by its Per-frame Functional Groups (Frame
Content: Temporal Position Index, In-Stack Position Number; Plane Position (Patient)) and the
rest shared (Pixel Measures, Plane Orientation, Frame Anatomy, the MR macros). The Multi-frame
Dimension module names Temporal Position Index and In-Stack Position Number as the frames'
dimensions. Written with pydicom module by module, so that dciodvfy finds every Type 1
attribute and the temporal position where the standard puts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from node.dicom.uids import derive_uid
from node.mri.phantom import BITS_STORED

__all__ = ["ENHANCED_MR_IMAGE_STORAGE", "EnhancedPhase", "enhanced_mr_image"]

ENHANCED_MR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.4.1"
_FRAME_TYPE: Final = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]


@dataclass(frozen=True)
class EnhancedPhase:
    """One DCE time point to write: its volume (slices, rows, columns), its index in the
    whole time series (1-based), seconds after the pre-contrast phase, and its contrast."""

    volume: npt.NDArray[np.uint16]
    temporal_position: int
    time_s: float
    contrast: bool


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}"


def _shared(spacing: tuple[float, float]) -> Dataset:
    """Shared Functional Groups: everything that is the same in every frame."""
    modifier = _item(
        InversionRecovery="NO",
        FlowCompensation="NONE",
        T2Preparation="NO",
        SpatialPresaturation="NONE",
        PartialFourier="NO",
        SpectrallySelectedExcitation="NONE",
        ParallelAcquisition="NO",
    )
    return _item(
        PixelMeasuresSequence=[
            _item(
                PixelSpacing=[f"{spacing[0]:g}", f"{spacing[0]:g}"],
                SliceThickness=f"{spacing[1]:g}",
                SpacingBetweenSlices=f"{spacing[1]:g}",
            )
        ],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])],
        FrameAnatomySequence=[
            _item(
                AnatomicRegionSequence=[_code("76752008", "SCT", "Breast")],
                FrameLaterality="B",  # both breasts in every axial slice
            )
        ],
        PixelValueTransformationSequence=[
            _item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")
        ],
        FrameVOILUTSequence=[_item(WindowCenter=600, WindowWidth=1200)],
        MRImageFrameTypeSequence=[
            _item(
                FrameType=_FRAME_TYPE,
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast="T1",
            )
        ],
        MRTimingAndRelatedParametersSequence=[
            _item(
                RepetitionTime=5.0,
                FlipAngle=10,
                EchoTrainLength=1,
                RFEchoTrainLength=0,
                GradientEchoTrainLength=1,
                SpecificAbsorptionRateSequence=[
                    _item(
                        SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                        SpecificAbsorptionRateValue=0.5,
                    )
                ],
                GradientOutputType="DB_DT",
                GradientOutput=0.0,
                OperatingModeSequence=[
                    _item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                    for kind in ("STATIC FIELD", "RF", "GRADIENT")
                ],
            )
        ],
        MRFOVGeometrySequence=[
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=256,
                MRAcquisitionPhaseEncodingStepsInPlane=256,
                MRAcquisitionPhaseEncodingStepsOutOfPlane=160,
                PercentSampling=100.0,
                PercentPhaseFieldOfView=100.0,
            )
        ],
        MREchoSequence=[_item(EffectiveEchoTime=2.0)],
        MRModifierSequence=[modifier],
        MRImagingModifierSequence=[
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=63.87,
                PixelBandwidth=400.0,
            )
        ],
        MRReceiveCoilSequence=[
            _item(
                ReceiveCoilName="Breast",
                ReceiveCoilManufacturerName="",
                ReceiveCoilType="VOLUME",
                QuadratureReceiveCoil="NO",
            )
        ],
        MRTransmitCoilSequence=[
            _item(TransmitCoilName="Body", TransmitCoilManufacturerName="", TransmitCoilType="BODY")
        ],
        MRAveragesSequence=[_item(NumberOfAverages=1)],
        MRDiffusionSequence=[_item(DiffusionBValue=0.0, DiffusionDirectionality="NONE")],
    )


def _frame(
    phase: EnhancedPhase,
    index: int,
    *,
    date: str,
    start_s: float,
    position: Sequence[float],
    contrast_module: bool,
) -> Dataset:
    """Per-frame Functional Groups of one slice of one phase."""
    when = f"{date}{_clock(start_s + phase.time_s)}"
    content = _item(
        FrameAcquisitionNumber=phase.temporal_position,
        FrameReferenceDateTime=when,
        FrameAcquisitionDateTime=when,
        FrameAcquisitionDuration=60000.0,
        StackID="1",
        InStackPositionNumber=index + 1,
        TemporalPositionIndex=phase.temporal_position,
        DimensionIndexValues=[phase.temporal_position, index + 1],
    )
    frame = _item(
        FrameContentSequence=[content],
        PlanePositionSequence=[_item(ImagePositionPatient=[f"{v:g}" for v in position])],
        TemporalPositionSequence=[_item(TemporalPositionTimeOffset=float(phase.time_s))],
    )
    if contrast_module:
        frame.ContrastBolusUsageSequence = [
            _item(
                ContrastBolusAgentNumber=1,
                ContrastBolusAgentAdministered="YES" if phase.contrast else "NO",
                ContrastBolusAgentDetected="YES" if phase.contrast else "NO",
                ContrastBolusAgentPhase="DYNAMIC" if phase.contrast else "PRE_CONTRAST",
            )
        ]
    return frame


def _dimensions(ds: Dataset, organisation: str) -> None:
    """Multi-frame Dimension (C.7.6.17): time, then the slice within the stack."""
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=organisation)]
    ds.DimensionOrganizationType = "3D_TEMPORAL"
    frame_content = Tag("FrameContentSequence")
    ds.DimensionIndexSequence = [
        _item(
            DimensionOrganizationUID=organisation,
            DimensionIndexPointer=Tag("TemporalPositionIndex"),
            FunctionalGroupPointer=frame_content,
            DimensionDescriptionLabel="Temporal Position Index",
        ),
        _item(
            DimensionOrganizationUID=organisation,
            DimensionIndexPointer=Tag("InStackPositionNumber"),
            FunctionalGroupPointer=frame_content,
            DimensionDescriptionLabel="In-Stack Position Number",
        ),
    ]


def _contrast(ds: Dataset) -> None:
    """Enhanced Contrast/Bolus (C.7.6.4b): the agent every post-contrast frame names."""
    agent = _code("C0304234", "UMLS", "gadobutrol")
    agent.ContrastBolusAgentNumber = 1
    agent.ContrastBolusAdministrationRouteSequence = [_code("47625008", "SCT", "Intravenous route")]
    agent.ContrastBolusIngredientCodeSequence = [_code("C0016911", "UMLS", "Gadolinium")]
    agent.ContrastBolusVolume = 7.5
    agent.ContrastBolusIngredientConcentration = 604.72
    ds.ContrastBolusAgentSequence = [agent]


def _pulse_sequence(ds: Dataset) -> None:
    """MR Pulse Sequence (C.8.13.4): a fat-suppressed spoiled 3D gradient echo (VIBE-like)."""
    ds.PulseSequenceName = "fl3d_vibe"
    ds.MRAcquisitionType = "3D"
    ds.EchoPulseSequence = "GRADIENT"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.CoverageOfKSpace = "FULL"
    ds.NumberOfKSpaceTrajectories = 1


def enhanced_mr_image(
    phases: Sequence[EnhancedPhase],
    *,
    header: Dataset,
    series_uid: str,
    series_number: int,
    description: str,
    spacing: tuple[float, float],
    z0: float,
    start_s: float,
) -> Dataset:
    """One Enhanced MR Image of ``phases`` (one or every DCE phase), frames time-major.

    ``header`` holds the Patient, General Study and Frame of Reference attributes (copied);
    ``z0`` is the first slice's position along the axial normal, ``start_s`` the pre-contrast
    acquisition's time of day.
    """
    shapes = {p.volume.shape for p in phases}
    if len(shapes) != 1 or phases[0].volume.ndim != 3 or phases[0].volume.dtype != np.uint16:
        raise ValueError("Enhanced MR phases are 3-D uint16 volumes of one shape")
    slices, rows, columns = phases[0].volume.shape
    if int(max(int(p.volume.max()) for p in phases)) >= 1 << BITS_STORED:
        raise ValueError(f"pixel values must fit Bits Stored {BITS_STORED} (PS3.3 C.7.6.3.1.1)")
    sop_uid = derive_uid(series_uid, "enhanced MR")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(ENHANCED_MR_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.update(header)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR_IMAGE_STORAGE, sop_uid
    ds.Modality = "MR"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, series_number
    ds.SeriesDescription = description
    ds.BodyPartExamined = "BREAST"
    # No General Series Laterality (Type 2C, absent): each frame's Frame Laterality says B.
    ds.PatientPosition = "FFP"
    ds.DeviceSerialNumber = "0"
    ds.InstanceNumber = 1
    date = str(header.StudyDate)
    ds.ContentDate = date
    ds.ContentTime = _clock(start_s + phases[-1].time_s)
    ds.AcquisitionDateTime = f"{date}{_clock(start_s + phases[0].time_s)}"
    ds.AcquisitionDuration = 60.0 * len(phases)
    # Enhanced MR Image (C.8.13.1)
    ds.ImageType = _FRAME_TYPE
    ds.AcquisitionNumber = phases[0].temporal_position
    ds.ContentQualification = "RESEARCH"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = 1.5
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    ds.AcquisitionContextSequence = DicomSequence([])
    _pulse_sequence(ds)
    contrast = any(p.contrast for p in phases)
    if contrast:
        _contrast(ds)
    _dimensions(ds, derive_uid(series_uid, "dimension organisation"))
    ds.SharedFunctionalGroupsSequence = [_shared(spacing)]
    x0, y0 = -columns * spacing[0] / 2, -rows * spacing[0] / 2
    ds.PerFrameFunctionalGroupsSequence = [
        _frame(
            phase,
            index,
            date=date,
            start_s=start_s,
            position=(x0, y0, z0 + index * spacing[1]),
            contrast_module=contrast,
        )
        for phase in phases
        for index in range(slices)
    ]
    ds.NumberOfFrames = len(phases) * slices
    # Image Pixel (C.7.6.3)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, BITS_STORED, 11, 0
    frames = np.stack([p.volume for p in phases])
    ds.PixelData = np.ascontiguousarray(frames, dtype="<u2").tobytes()
    return ds
