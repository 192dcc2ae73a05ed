"""A breast-shaped synthetic mammogram whose lesions are known, so tests can score a detector.

Orientation follows the display convention of mammography (ACR/IHE Mammography Image
profile) as Patient Orientation (0020,0020) records it (PS3.3 C.7.6.1.1.1): the first value is
the direction of increasing column index, the second of increasing row index.

========  ==================  =============================================
view      PatientOrientation  what the image shows
========  ==================  =============================================
L CC      ``A\\R``            chest wall at the LEFT edge, nipple pointing right,
                              lateral side up
R CC      ``P\\L``            chest wall at the RIGHT edge, nipple pointing left
L MLO     ``A\\FR``           chest wall (pectoral muscle top corner) LEFT
R MLO     ``P\\FL``           chest wall (pectoral muscle top corner) RIGHT
========  ==================  =============================================

So a left and a right breast hung side by side face each other chest wall to chest wall
(right breast on the viewer's left). The phantom is drawn for a left breast and mirrored for
a right one. Pixel values are presentation values (brighter = denser, MONOCHROME2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from node.domain import Finding

_ORIENTATION: dict[tuple[str, str], tuple[str, str]] = {
    ("L", "CC"): ("A", "R"),
    ("R", "CC"): ("P", "L"),
    ("L", "MLO"): ("A", "FR"),
    ("R", "MLO"): ("P", "FL"),
}


@dataclass(frozen=True)
class Phantom:
    """A synthetic image (uint16 stored values) and the lesions drawn into it."""

    pixels: npt.NDArray[np.uint16]
    lesions: tuple[Finding, ...]
    laterality: Literal["L", "R"]
    view: Literal["CC", "MLO"]
    bits_stored: int

    @property
    def patient_orientation(self) -> tuple[str, str]:
        return patient_orientation(self.laterality, self.view)


def patient_orientation(laterality: str, view: str) -> tuple[str, str]:
    """Patient Orientation (0020,0020) of a mammogram displayed by the convention above."""
    try:
        return _ORIENTATION[(laterality, view)]
    except KeyError:
        raise ValueError(
            f"no Patient Orientation for ImageLaterality {laterality!r} and ViewPosition"
            f" {view!r}: expected 'L'/'R' and 'CC'/'MLO'"
        ) from None


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], factor: int, sigma: float
) -> npt.NDArray[np.float32]:
    """Band-limited noise: white noise on a coarse grid, blurred and upsampled (fast)."""
    small = (max(2, shape[0] // factor), max(2, shape[1] // factor))
    noise = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma)
    noise /= float(noise.std()) + 1e-6
    zoom = (shape[0] / small[0], shape[1] / small[1])
    big = ndimage.zoom(noise, zoom, order=1, grid_mode=True, mode="nearest")
    return np.asarray(big[: shape[0], : shape[1]], dtype=np.float32)


def _breast(
    rng: np.random.Generator, rows: int, columns: int, view: str
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Return (rho, pectoral, inside) for a left breast with the chest wall at column 0.

    ``rho`` is the elliptic radius (0 at the chest wall centre, 1 on the skin line).
    """
    r = np.arange(rows, dtype=np.float32)[:, None]
    c = np.arange(columns, dtype=np.float32)[None, :]
    depth = rng.uniform(0.62, 0.85) * columns
    if view == "CC":
        centre = rng.uniform(0.45, 0.55) * rows
        half_height = rng.uniform(0.34, 0.44) * rows
    else:
        # The MLO breast reaches up into the axilla: taller, and cut by the top edge.
        centre = rng.uniform(0.40, 0.48) * rows
        half_height = rng.uniform(0.50, 0.58) * rows
    rho = np.sqrt((c / depth) ** 2 + ((r - centre) / half_height) ** 2)
    pectoral = np.zeros((rows, columns), np.float32)
    if view == "MLO":
        # Pectoral muscle: a bright triangle in the upper chest-wall corner.
        width = rng.uniform(0.22, 0.35) * columns
        height = rng.uniform(0.45, 0.65) * rows
        edge = width * (1.0 - r / height) - c
        pectoral = np.clip(edge / (0.02 * columns), 0.0, 1.0).astype(np.float32)
    inside = rho < 1.0
    return rho.astype(np.float32), pectoral, inside


def _draw_mass(
    img: npt.NDArray[np.float32],
    rng: np.random.Generator,
    row: float,
    col: float,
    radius: float,
    amplitude: float,
    spiculated: bool,
) -> None:
    """Add a blurred, lobulated blob (optionally with spicules) to ``img`` in place."""
    reach = int(np.ceil(radius * (3.0 if spiculated else 1.6))) + 2
    r0, r1 = max(0, int(row) - reach), min(img.shape[0], int(row) + reach + 1)
    c0, c1 = max(0, int(col) - reach), min(img.shape[1], int(col) + reach + 1)
    rr = np.arange(r0, r1, dtype=np.float32)[:, None] - row
    cc = np.arange(c0, c1, dtype=np.float32)[None, :] - col
    dist = np.sqrt(rr**2 + cc**2)
    angle = np.arctan2(rr, cc)
    lobes = np.ones_like(dist)
    for k in (2, 3, 5):
        lobes += rng.uniform(0.0, 0.08) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    edge = radius * lobes
    soft = 0.18 * radius
    blob = 1.0 / (1.0 + np.exp((dist - edge) / soft))
    if spiculated:
        width = max(0.8, 0.05 * radius)
        for theta in rng.uniform(0, 2 * np.pi, size=int(rng.integers(8, 16))):
            length = radius * rng.uniform(1.6, 2.8)
            along = cc * np.cos(theta) + rr * np.sin(theta)
            across = -cc * np.sin(theta) + rr * np.cos(theta)
            on = (along > 0) & (along < length)
            fade = np.clip(1.0 - along / length, 0.0, 1.0)
            blob += 0.6 * on * fade * np.exp(-(across**2) / (2 * width**2))
    img[r0:r1, c0:c1] += amplitude * np.clip(blob, 0.0, 1.2)


def _draw_calcifications(
    img: npt.NDArray[np.float32], rng: np.random.Generator, row: float, col: float, radius: float
) -> None:
    """Add a cluster of small, very bright dots (microcalcifications) in place."""
    scale = max(img.shape) / 1024
    for _ in range(int(rng.integers(5, 16))):
        a, d = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 1))
        y, x = row + d * np.sin(a), col + d * np.cos(a)
        dot = rng.uniform(1.0, 2.5) * scale
        reach = int(np.ceil(3 * dot)) + 1
        r0, r1 = max(0, int(y) - reach), min(img.shape[0], int(y) + reach + 1)
        c0, c1 = max(0, int(x) - reach), min(img.shape[1], int(x) + reach + 1)
        rr = np.arange(r0, r1, dtype=np.float32)[:, None] - y
        cc = np.arange(c0, c1, dtype=np.float32)[None, :] - x
        img[r0:r1, c0:c1] += rng.uniform(0.3, 0.5) * np.exp(-(rr**2 + cc**2) / (2 * dot**2))


def _place(
    rng: np.random.Generator,
    rho: npt.NDArray[np.float32],
    pectoral: npt.NDArray[np.float32],
    radius: float,
    taken: list[Finding],
) -> tuple[float, float]:
    """Pick a lesion centre well inside the breast, off the muscle, apart from other lesions."""
    rows, columns = rho.shape
    for _ in range(200):
        row, col = rng.uniform(0, rows), rng.uniform(0, columns)
        ri, ci = int(row), int(col)
        if rho[ri, ci] > 0.75 or pectoral[ri, ci] > 0 or col < radius * 1.5:
            continue
        if all(np.hypot(row - f.row, col - f.column) > 2.5 * (radius + f.radius) for f in taken):
            return row, col
    raise ValueError("could not place all lesions: ask for fewer lesions or a larger image")


def make_phantom(
    seed: int,
    rows: int = 1024,
    columns: int = 832,
    laterality: Literal["L", "R"] = "L",
    view: Literal["CC", "MLO"] = "CC",
    lesions: int = 1,
    calcifications: int = 0,
    bits_stored: int = 12,
) -> Phantom:
    """Draw a deterministic phantom for ``seed`` with ``lesions`` masses and calcification clusters.

    Every drawn lesion is malignant ground truth (``Finding.score`` 1.0); coordinates are in
    pixels of the returned image, after mirroring for a right breast.
    """
    if rows < 64 or columns < 64:
        raise ValueError(f"phantom needs at least 64x64 pixels, got {rows}x{columns}")
    if laterality not in ("L", "R") or view not in ("CC", "MLO"):
        raise ValueError(
            f"laterality must be 'L'/'R' and view 'CC'/'MLO', got {laterality!r}, {view!r}"
        )
    if lesions < 0 or calcifications < 0:
        raise ValueError("lesions and calcifications must be >= 0")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"BitsStored must be 8..16, got {bits_stored}")
    rng = np.random.default_rng(seed)
    rho, pectoral, inside = _breast(rng, rows, columns, view)
    # Compressed breast: thickness is even, falling off over the last ~12 % to the skin line.
    thickness = np.clip((1.0 - rho) / 0.12, 0.0, 1.0) ** 0.6
    glandular_envelope = np.exp(-((rho / rng.uniform(0.55, 0.8)) ** 2))
    coarse = _smooth_noise(rng, (rows, columns), 32, 1.2)
    fine = _smooth_noise(rng, (rows, columns), 8, 1.0)
    density = rng.uniform(0.2, 0.5)
    glandular = np.clip(0.5 * coarse + 0.3 * fine + (density - 0.5) * 2, 0.0, None)
    img = thickness * (0.28 + 0.22 * np.tanh(glandular) * glandular_envelope)
    img = np.maximum(img, 0.5 * pectoral * thickness).astype(np.float32)

    truth: list[Finding] = []
    scale = rows / 1024
    for _ in range(lesions):
        radius = rng.uniform(16, 48) * scale
        row, col = _place(rng, rho, pectoral, radius, truth)
        amplitude = rng.uniform(0.10, 0.22)
        _draw_mass(img, rng, row, col, radius, amplitude, spiculated=bool(rng.random() < 0.4))
        truth.append(Finding(column=col, row=row, radius=radius, score=1.0, kind="mass"))
    for _ in range(calcifications):
        radius = rng.uniform(12, 32) * scale
        row, col = _place(rng, rho, pectoral, radius, truth)
        _draw_calcifications(img, rng, row, col, radius)
        truth.append(Finding(column=col, row=row, radius=radius, score=1.0, kind="calcification"))

    img += rng.normal(0.0, 0.008, size=img.shape).astype(np.float32) * inside
    img *= inside
    top = (1 << bits_stored) - 1
    pixels = np.clip(np.rint(img * top), 0, top).astype(np.uint16)
    if laterality == "R":
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        truth = [
            Finding(
                column=columns - 1 - f.column,
                row=f.row,
                radius=f.radius,
                score=f.score,
                kind=f.kind,
            )
            for f in truth
        ]
    return Phantom(pixels, tuple(truth), laterality, view, bits_stored)
