"""The lesion head: a logistic regression per feature cell, trained on lesion outlines.

Why: the class-activation map of the image-level head points at where a breast differs from
the other breast, not at the lesion (its top peak lay within 1.5 radii of a mini-MIAS lesion
centre in about 6-15 % of images, near chance). A head supervised on the cells inside the
annotated lesion circles localises far better, and the difference between the two breasts'
lesion maxima adds to the exam score.

Cell vector (per stride-16 cell of the canonical 768 x 512 frame): the "mid" tap's channels
and its stride-32 parent cell's "late" channels, minus the OTHER breast's mean cell vector
(the same contralateral normalisation as the exam head; this breast's own mean when the other
breast is missing). Exam logit = the exam head's logit + ``beta`` x (this breast's lesion max
- the other breast's lesion max), calibrated by its own Platt pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import expit

if TYPE_CHECKING:  # contralateral.py serves this head, so it cannot be imported from here
    from node.inference.contralateral import Features

FloatArray = npt.NDArray[np.float64]


def cell_vectors(f: Features) -> npt.NDArray[np.float32]:
    """(h * w) x (C_mid + C_late): every "mid" cell with its "late" parent cell's channels."""
    mid, late = f.maps["mid"], f.maps["late"]
    h, w = mid.shape[1:]
    up = late.repeat(2, 1).repeat(2, 2)[:, :h, :w]
    if up.shape[1:] != (h, w):
        raise ValueError(f"late tap {late.shape[1:]} is not half of the mid tap {(h, w)}")
    return np.concatenate([mid.reshape(mid.shape[0], -1), up.reshape(up.shape[0], -1)]).T


def mean_cell(f: Features) -> npt.NDArray[np.float32]:
    """The mean cell vector over the breast (the contralateral reference)."""
    return np.asarray(cell_vectors(f)[f.grids["mid"].ravel()].mean(0), np.float32)


@dataclass(frozen=True)
class LesionHead:
    """w . (cell - reference) + b per cell; ``beta``, ``platt`` and ``threshold`` turn the
    lesion maxima into the exam score together with the exam head."""

    weight: FloatArray
    bias: float
    beta: float
    platt: tuple[float, float] = (1.0, 0.0)
    threshold: float = 0.5

    def grid(self, this: Features, other: Features | None) -> FloatArray:
        """Lesion logit per "mid" cell; -inf outside the breast."""
        reference = mean_cell(this if other is None else other).astype(np.float64)
        cells = cell_vectors(this).astype(np.float64)
        logits = ((cells - reference) @ self.weight + self.bias).reshape(this.grids["mid"].shape)
        return np.where(this.grids["mid"], logits, -np.inf)

    def exam_logit(
        self, head_logit: float | FloatArray, this: float | FloatArray, other_max: float
    ) -> FloatArray:
        """The exam head's logit plus beta x (this breast's lesion maximum - the other's); with
        a lesion map as ``this``, per cell: the logit the image would have were that cell its
        maximum."""
        return np.asarray(head_logit, np.float64) + self.beta * (np.asarray(this) - other_max)

    def calibrated(self, logit: npt.NDArray[np.floating] | float) -> FloatArray:
        a, b = self.platt
        return np.asarray(expit(a * np.asarray(logit, np.float64) + b), np.float64)

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        values = {
            "weight": self.weight,
            "bias": np.array([self.bias]),
            "beta": np.array([self.beta]),
            "platt": np.array(self.platt),
            "threshold": np.array([self.threshold]),
        }
        return {
            f"{prefix}.{k}": torch.from_numpy(np.asarray(v, np.float64)) for k, v in values.items()
        }

    @classmethod
    def from_tensors(cls, state: Mapping[str, torch.Tensor], prefix: str) -> LesionHead:
        """Read a lesion head; KeyError/ValueError when the tensors do not make one."""

        def get(name: str) -> FloatArray:
            return state[f"{prefix}.{name}"].double().numpy()

        weight = get("weight")
        if weight.ndim != 1 or not np.isfinite(weight).all():
            raise ValueError(f"{prefix}: weight must be a finite vector")
        return cls(
            weight,
            float(get("bias")[0]),
            float(get("beta")[0]),
            (float(get("platt")[0]), float(get("platt")[1])),
            float(get("threshold")[0]),
        )
