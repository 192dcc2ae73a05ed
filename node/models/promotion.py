"""The promotion gate: a candidate becomes live only when it is not worse than the live model.

Both are compared on the same locked validation set, as recorded in the ``evaluation`` block
of each model.yaml, either as ``mammo-node evaluate --record`` writes it (the set is
``dataset_id/split``)::

    evaluation:
      validation:
        dataset_id: mias-dev
        split: val
        figures:
          auc: {value: 0.87, ci: [0.80, 0.93]}
          sensitivity_at_operating_point: {value: 0.80, ci: [...]}

or in the short form::

    evaluation:
      locked_set: mias-locked-v1      # id of the locked validation set
      auc: 0.87
      sensitivity_at_operating_point: 0.80
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from node.config import PromotionMargins
from node.errors import PromotionRefused
from node.models.registry import ModelFolder


@dataclass(frozen=True)
class EvaluationSummary:
    """The figures promotion compares, read from model.yaml's ``evaluation`` block."""

    locked_set: str | None
    auc: float | None
    sensitivity: float | None
    specificity: float | None

    @classmethod
    def from_evaluation(cls, evaluation: Mapping[str, Any]) -> EvaluationSummary:
        validation = evaluation.get("validation")
        if isinstance(validation, Mapping):
            return cls._from_recorded(validation)

        def number(key: str) -> float | None:
            value = evaluation.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return None

        locked = evaluation.get("locked_set")
        return cls(
            locked_set=str(locked) if isinstance(locked, str) and locked.strip() else None,
            auc=number("auc"),
            sensitivity=number("sensitivity_at_operating_point"),
            specificity=number("specificity_at_operating_point"),
        )

    @classmethod
    def _from_recorded(cls, validation: Mapping[str, Any]) -> EvaluationSummary:
        """The block ``mammo-node evaluate --record`` writes (node/evaluation)."""
        figures = validation.get("figures")
        figures = figures if isinstance(figures, Mapping) else {}

        def value(key: str) -> float | None:
            entry = figures.get(key)
            number = entry.get("value") if isinstance(entry, Mapping) else entry
            if isinstance(number, int | float) and not isinstance(number, bool):
                return float(number)
            return None

        dataset, split = validation.get("dataset_id"), validation.get("split")
        locked = (
            f"{dataset}/{split}" if isinstance(dataset, str) and isinstance(split, str) else None
        )
        return cls(
            locked_set=locked,
            auc=value("auc"),
            sensitivity=value("sensitivity_at_operating_point"),
            specificity=value("specificity_at_operating_point"),
        )

    def describe(self) -> str:
        if self.locked_set is None:
            return "not evaluated on a locked set"
        figures = [
            f"{name} {value:.3f}"
            for name, value in (
                ("AUC", self.auc),
                ("sens", self.sensitivity),
                ("spec", self.specificity),
            )
            if value is not None
        ]
        return f"{self.locked_set}: {', '.join(figures) or 'no figures'}"


def evaluation_of(folder: ModelFolder) -> EvaluationSummary:
    """The evaluation summary of a validated model folder."""
    raw = yaml.safe_load((folder.path / "model.yaml").read_text(encoding="utf-8"))
    return EvaluationSummary.from_evaluation(raw["evaluation"])


def check_promotion(
    candidate: EvaluationSummary, live: EvaluationSummary, margins: PromotionMargins
) -> None:
    """Raise PromotionRefused unless the candidate is not worse than live on the same set."""
    if candidate.locked_set is None or live.locked_set is None:
        which = "candidate" if candidate.locked_set is None else "live model"
        raise PromotionRefused(
            f"the {which} has no evaluation on a locked set (evaluation.locked_set in model.yaml)"
        )
    if candidate.locked_set != live.locked_set:
        raise PromotionRefused(
            f"not evaluated on the same locked set: candidate {candidate.locked_set!r}, "
            f"live {live.locked_set!r}"
        )
    checks = (
        ("AUC", candidate.auc, live.auc, margins.max_auc_drop),
        ("sensitivity", candidate.sensitivity, live.sensitivity, margins.max_sensitivity_drop),
    )
    for name, new, old, drop in checks:
        if new is None or old is None:
            raise PromotionRefused(f"{name} is missing from an evaluation on {live.locked_set}")
        if new < old - drop - 1e-9:
            raise PromotionRefused(
                f"{name} {new:.3f} is worse than the live model's {old:.3f} on "
                f"{live.locked_set} (allowed drop {drop:.3f})"
            )
