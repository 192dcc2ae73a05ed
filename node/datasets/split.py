"""Patient-level splits, stratified by the patient's worst label, seeded.

Splitting by image would put a woman's left breast in training and her right in validation:
her anatomy, density and scanner leak across and inflate the validation figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from node.datasets.manifest import ImageRecord
from node.errors import DatasetError

_SEVERITY = {"unknown": 0, "normal": 1, "benign": 2, "malignant": 3}


def assign_splits(
    records: Sequence[ImageRecord], val_fraction: float, seed: int, test_fraction: float = 0.0
) -> list[ImageRecord]:
    """Give every image the split of its patient: train / val (/ test)."""
    if not 0.0 <= val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0:
        raise DatasetError("split fractions must lie in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError("val + test fractions must leave patients for training")
    patients: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        patients[record.patient_id].append(record)
    strata: dict[str, list[str]] = defaultdict(list)
    for patient, images in sorted(patients.items()):
        worst = max(images, key=lambda r: _SEVERITY[r.label]).label
        strata[worst].append(patient)
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for label in sorted(strata):
        group = list(strata[label])
        rng.shuffle(group)
        n_val = round(val_fraction * len(group))
        n_test = round(test_fraction * len(group))
        for i, patient in enumerate(group):
            split_of[patient] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return [r.with_split(split_of[r.patient_id]) for r in records]
