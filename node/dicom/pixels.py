"""Pixels as displayed: the grayscale pipeline of PS3.3 C.11, applied by hand where it matters.

A model must see what a radiologist sees (For Presentation images are processed for display),
so stored values go through the Modality LUT, the VOI LUT and the Presentation LUT / polarity,
and come out in [0, 1] with brighter = denser. monai's ``LoadImage(reader="PydicomReader")``
is not used: it transposes the image and applies none of these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from node.config import DEFAULT_MAX_IMAGE_PIXELS
from node.dicom.limits import check_pixel_budget
from node.errors import InvalidInput

FloatImage = npt.NDArray[np.float32]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _first(value: object) -> float:
    """First value of a possibly multi-valued DS (several windows: the first is the default)."""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        if not value:
            raise InvalidInput("empty Window Center / Window Width (0028,1050/1051)")
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def window(
    values: npt.NDArray[np.float64], center: float, width: float, function: str
) -> FloatImage:
    """Apply a VOI window and return [0, 1] (PS3.3 C.11.2.1.2 and C.11.2.1.3)."""
    x = values.astype(np.float64)
    if function == "LINEAR":  # C.11.2.1.2.1
        if width < 1:
            raise InvalidInput(
                f"Window Width {width} < 1 is not allowed for VOI LUT Function LINEAR"
            )
        y = (x - (center - 0.5)) / (width - 1) + 0.5 if width > 1 else (x > center - 0.5) * 1.0
        y = np.where(x <= center - 0.5 - (width - 1) / 2, 0.0, y)
        y = np.where(x > center - 0.5 + (width - 1) / 2, 1.0, y)
    elif function == "LINEAR_EXACT":  # C.11.2.1.3.2
        if width <= 0:
            raise InvalidInput(f"Window Width {width} <= 0 is not allowed for LINEAR_EXACT")
        y = (x - center) / width + 0.5
    elif function == "SIGMOID":  # C.11.2.1.3.1
        if width <= 0:
            raise InvalidInput(f"Window Width {width} <= 0 is not allowed for SIGMOID")
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    else:
        raise InvalidInput(f"unsupported VOI LUT Function (0028,1056) {function!r}")
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.BitsStored)
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _lut_output_max(item: Dataset) -> float:
    """Largest output of a LUT: 2^n - 1 by its LUT Descriptor, unless its data says more."""
    bits = int(item.LUTDescriptor[2])
    data = item.LUTData
    data_max = (
        float(max(data)) if isinstance(data, list | tuple | pydicom.multival.MultiValue) else 0.0
    )
    return max(float((1 << bits) - 1), data_max)


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """Range of Modality LUT output, used to normalise an image that has no VOI LUT."""
    if "ModalityLUTSequence" in ds:
        return 0.0, _lut_output_max(ds.ModalityLUTSequence[0])
    lo, hi = _stored_range(ds)
    ends = apply_modality_lut(np.array([lo, hi]), ds).astype(np.float64)
    return float(ends.min()), float(ends.max())


def _check_image(ds: Dataset, max_pixels: int) -> None:
    if "PixelData" not in ds:
        raise InvalidInput("no Pixel Data (7FE0,0010): not an image")
    check_pixel_budget(ds, max_pixels)  # before anything decodes
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1 or photometric not in (
        "MONOCHROME1",
        "MONOCHROME2",
    ):
        raise InvalidInput(
            f"colour or unknown Photometric Interpretation {photometric!r}"
            f" (SamplesPerPixel {getattr(ds, 'SamplesPerPixel', '?')}): grayscale needed"
        )
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise InvalidInput(
            f"multi-frame image ({ds.NumberOfFrames} frames, e.g. tomosynthesis): one frame needed"
        )
    if "BitsStored" not in ds:
        raise InvalidInput("no Bits Stored (0028,0101)")


def presentation_pixels(ds: Dataset, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> FloatImage:
    """Return the image as displayed, float32 in [0, 1], brighter = denser.

    Order (PS3.3 C.11): Modality LUT (Rescale Slope/Intercept or Modality LUT Sequence), then
    the VOI LUT: the first Window Center/Width (VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID)
    when present, else the first VOI LUT Sequence item, else the full Modality LUT output range.
    Polarity last: MONOCHROME1 and Presentation LUT Shape INVERSE describe the same single
    inversion (PS3.3 C.8.11.3, DX Image Module: INVERSE "shall be used if" MONOCHROME1), so
    the output is inverted once when either says so, never twice.

    Nothing is decoded when the header or the codestream claims more than ``max_pixels``.
    """
    _check_image(ds, max_pixels)
    try:
        stored = ds.pixel_array
    except (ValueError, NotImplementedError, RuntimeError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"pixel data cannot be decoded: {exc}") from exc
    if stored.ndim != 2:
        raise InvalidInput(
            f"expected one 2-D grayscale frame, got pixel array shape {stored.shape}"
        )
    try:
        return _displayed(ds, stored)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # A Rescale, Window or LUT attribute pydicom cannot read (e.g. DS "\xb7048.0").
        raise InvalidInput(
            f"grayscale pipeline attributes (PS3.3 C.11) cannot be applied: {type(exc).__name__}"
        ) from exc


def _displayed(ds: Dataset, stored: npt.NDArray[np.generic]) -> FloatImage:
    """Modality LUT, VOI LUT and polarity, in the order presentation_pixels documents."""
    modality = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)

    if ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, ""):
        function = str(getattr(ds, "VOILUTFunction", "") or "LINEAR").strip()
        out = window(modality, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    elif "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        item = ds.VOILUTSequence[0]
        # A LUT is indexed by integers; rescaled values that are whole numbers stay integers.
        indices = modality.astype(np.int64) if np.all(modality == np.round(modality)) else modality
        mapped = np.asarray(apply_voi_lut(indices, ds, index=0, prefer_lut=True), np.float64)
        out = np.clip(mapped / _lut_output_max(item), 0.0, 1.0).astype(np.float32)
    else:
        lo, hi = _modality_range(ds)
        out = np.clip((modality - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)

    inverse = str(getattr(ds, "PresentationLUTShape", "")).strip() == "INVERSE"
    if ds.PhotometricInterpretation == "MONOCHROME1" or inverse:
        out = (1.0 - out).astype(np.float32)
    return out


def _read_pgm(data: bytes) -> FloatImage:
    """Binary PGM (P5), 8 or 16 bit (big-endian), normalised by its own maxval."""
    fields: list[bytes] = []
    pos = 2
    while len(fields) < 3:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1 if b"\n" in data[pos:] else len(data)
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise InvalidInput("truncated PGM header")
        fields.append(data[start:pos])
    pos += 1  # exactly one whitespace byte before the raster
    try:
        width, height, maxval = (int(f) for f in fields)
    except ValueError as exc:
        raise InvalidInput(f"bad PGM header {fields!r}") from exc
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise InvalidInput(f"bad PGM header: {width}x{height}, maxval {maxval}")
    dtype = np.dtype(">u2") if maxval > 255 else np.dtype("u1")
    need = width * height * dtype.itemsize
    if len(data) - pos < need:
        raise InvalidInput(f"truncated PGM raster: {len(data) - pos} of {need} bytes")
    raster = np.frombuffer(data, dtype=dtype, count=width * height, offset=pos)
    return (raster.reshape(height, width).astype(np.float32) / maxval).clip(0.0, 1.0)


def _read_png(path: Path) -> FloatImage:
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("L", "1"):
                return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            if mode.startswith("I;16") or mode == "I":
                arr = np.asarray(im, dtype=np.float32)
                return (arr / 65535.0).clip(0.0, 1.0)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInput(f"cannot decode PNG {path}: {exc}") from exc
    raise InvalidInput(f"PNG mode {mode!r} is not 8/16-bit grayscale")


def read_image_file(path: Path | str) -> tuple[FloatImage, Dataset | None]:
    """Read a DICOM, PNG or PGM file (recognised by content) as presentation pixels in [0, 1].

    Returns the pixels and the DICOM dataset (None for PNG/PGM, which carry no laterality).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise InvalidInput(f"cannot open {path}: {exc.strerror or exc}") from exc
    if head.startswith(_PNG_MAGIC):
        return _read_png(path), None
    if head[:2] == b"P5":
        return _read_pgm(path.read_bytes()), None
    # DICOM Part 10 has "DICM" after a 128-byte preamble (PS3.10 7.1); a bare dataset starts
    # with a group 0002 or 0008 tag.
    if head[128:132] == b"DICM" or head[:2] in (b"\x02\x00", b"\x08\x00"):
        try:
            ds = pydicom.dcmread(path, force=head[128:132] != b"DICM")
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
            raise InvalidInput(f"cannot parse DICOM {path}: {exc}") from exc
        return presentation_pixels(ds), ds
    raise InvalidInput(f"{path} is not a DICOM, PNG or binary PGM (P5) file")
