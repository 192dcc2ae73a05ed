"""Lesion localisation: FROC (lesion sensitivity vs false positives per image).

A finding hits a lesion when its centre lies within ``hit_factor`` x the lesion's radius of the
lesion's centre (1.0: inside the annotated circle; 1.5 tolerates the loose circles of
mini-MIAS), or when it lies inside the lesion's outline where the dataset has one (a
CBIS-DDSM ROI mask: ``ScoredFinding.lesion``; irregular and elongated lesions reach beyond
the circle of their equivalent radius). Each lesion counts once; a finding that hits no lesion is a false positive.
Abnormal images without lesion coordinates cannot be scored and are left out of the FROC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from node.datasets.manifest import Lesion

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class ScoredFinding:
    column: float
    row: float
    score: float
    lesion: int = 0  # the lesion mask's value under the finding (k = k-th lesion), 0 = none


@dataclass(frozen=True)
class FrocCurve:
    fp_per_image: list[float]
    sensitivity: list[float]
    lesions: int
    images: int

    def sensitivity_at(self, fp_rate: float) -> float:
        """Best lesion sensitivity with at most ``fp_rate`` false positives per image."""
        fp = np.asarray(self.fp_per_image)
        sens = np.asarray(self.sensitivity)
        allowed = sens[fp <= fp_rate + 1e-12]
        return float(allowed.max()) if allowed.size else 0.0


def froc(
    findings: Sequence[Sequence[ScoredFinding]],
    lesions: Sequence[Sequence[Lesion]],
    hit_factor: float = 1.5,
) -> FrocCurve:
    """FROC over images: ``findings[i]`` and ``lesions[i]`` belong to image i."""
    if len(findings) != len(lesions):
        raise ValueError("findings and lesions need one entry per image")
    # Each finding: (score, image, index of the lesion it hits or -1)
    events: list[tuple[float, int, int]] = []
    for image, (found, truth) in enumerate(zip(findings, lesions, strict=True)):
        for f in found:
            hit = f.lesion - 1 if 0 < f.lesion <= len(truth) else -1
            for k, lesion in enumerate(truth):
                if hit >= 0:
                    break
                if (
                    np.hypot(f.column - lesion.column, f.row - lesion.row)
                    <= hit_factor * lesion.radius
                ):
                    hit = k
                    break
            events.append((f.score, image, hit))
    total_lesions = sum(len(t) for t in lesions)
    n_images = max(1, len(findings))
    events.sort(key=lambda e: -e[0])
    hit_set: set[tuple[int, int]] = set()
    false_positives = 0
    fp_curve, sens_curve = [0.0], [0.0]
    for i, (score, image, hit) in enumerate(events):
        if hit >= 0:
            hit_set.add((image, hit))
        else:
            false_positives += 1
        if i + 1 == len(events) or events[i + 1][0] != score:
            fp_curve.append(false_positives / n_images)
            sens_curve.append(len(hit_set) / total_lesions if total_lesions else 0.0)
    return FrocCurve(fp_curve, sens_curve, total_lesions, len(findings))
