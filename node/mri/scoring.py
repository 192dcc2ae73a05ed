"""Scoring MR lesion candidates from their kinetic features: the rule, and a pluggable learned one.

A scorer maps a candidate's :class:`KineticFeatures` to a number in [0, 1] and says how it got
there. Two kinds exist:

- :data:`RULE_SCORER`, the default: ``0.7 x curve weight + 0.3 x min(PE / 200 %, 1)`` with
  curve weights persistent 0.2, plateau 0.5, washout 0.8 (the BI-RADS MRI lexicon's order of
  suspicion, rising with enhancement). A rule of thumb, NOT a probability of malignancy.
- :class:`LogisticKineticScorer`: a logistic model on the features, kept as a model folder
  like the mammography models (``<dir>/<id>/<version>/model.yaml`` + ``MODEL_CARD.md``,
  ``kind: mri-kinetic-logistic``, device UID derived from id and version). It ships
  **untrained**: no labelled breast MRI is available here, so the only fits ever made are
  on phantoms, which proves the plumbing and nothing about cancer.

The gate (as mammography's promotion gate, :mod:`node.models.promotion`): a learned scorer
replaces the rule only when its model.yaml records an evaluation on a named locked set with
an AUC, and its training data is not synthetic only; otherwise :func:`load_kinetic_scorer`
raises PromotionRefused, unless the caller asks for research use explicitly.

Keep these folders out of the mammography ``models/`` directory: its registry reads every
``*/*/model.yaml`` there as a mammography model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import yaml

from node.dicom.uids import derive_uid
from node.domain import ModelSpec
from node.errors import InvalidModelConfig, ModelNotFound, PromotionRefused
from node.models.trained_on import synthetic_only
from node.mri.phantom import CurveType
from node.writers.locales import Locale
from node.writers.provenance import NODE_MANUFACTURER

if TYPE_CHECKING:
    from node.models.promotion import EvaluationSummary

__all__ = [
    "CURVE_WEIGHTS",
    "FEATURE_NAMES",
    "KINETIC_CAD",
    "KINETIC_LOGISTIC",
    "RULE_SCORER",
    "KineticFeatures",
    "KineticScorer",
    "LogisticKineticScorer",
    "RuleScorer",
    "fit_logistic",
    "load_kinetic_scorer",
    "write_scorer_folder",
]

KINETIC_CAD: Final = ModelSpec(
    model_id="mri-kinetics",
    version="0.1.0",
    name="mammo-node DCE-MRI kinetic CAD",
    manufacturer=NODE_MANUFACTURER,
    device_uid=derive_uid("mammo-node", "mri-kinetics", "0.1.0"),
    intended_use="Research: breast DCE-MRI kinetic curves, rule-based, untrained",
    training_data="none: BI-RADS MRI lexicon kinetics, tested on synthetic phantoms only",
    operating_point=0.5,
    finding_threshold=0.5,
    input_size=(0, 0),
)
KINETIC_LOGISTIC: Final = "mri-kinetic-logistic"
CURVE_WEIGHTS: Final[dict[CurveType, float]] = {"persistent": 0.2, "plateau": 0.5, "washout": 0.8}
#: The learned scorer's inputs, in this order (a model.yaml names them, so a change shows).
FEATURE_NAMES: Final = (
    "persistent_fraction",
    "plateau_fraction",
    "washout_fraction",
    "max_enhancement_per_100_percent",
    "signal_enhancement_ratio",
    "log10_volume_mm3",
)
_KEYS: Final = {
    "id": str,
    "version": str,
    "kind": str,
    "name": str,
    "manufacturer": str,
    "device_uid": str,
    "features": list,
    "coefficients": dict,
    "intercept": float,
    "operating_point": float,
    "training_data": str,
    "intended_use": str,
    "licence": str,
    "evaluation": dict,
}
_MAX_ITERATIONS: Final = 5000


@dataclass(frozen=True)
class KineticFeatures:
    """What a scorer sees of one candidate (node/mri/kinetics.py measures them)."""

    curve: CurveType
    curve_fractions: Mapping[CurveType, float]
    max_enhancement_percent: float
    mean_ser: float
    volume_mm3: float

    def vector(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The values of :data:`FEATURE_NAMES`, in order."""
        return np.array(
            [
                self.curve_fractions.get("persistent", 0.0),
                self.curve_fractions.get("plateau", 0.0),
                self.curve_fractions.get("washout", 0.0),
                self.max_enhancement_percent / 100.0,
                self.mean_ser,
                math.log10(max(self.volume_mm3, 1.0)),
            ],
            dtype=np.float64,
        )


class KineticScorer(Protocol):
    """Scores candidates in [0, 1]; ``spec`` names it in the outputs' provenance."""

    @property
    def spec(self) -> ModelSpec: ...

    def score(self, features: KineticFeatures) -> float: ...

    def explain(self, features: KineticFeatures, strings: Locale) -> str: ...


@dataclass(frozen=True)
class RuleScorer:
    """The BI-RADS-lexicon rule of thumb (see the module docstring)."""

    spec: ModelSpec = KINETIC_CAD

    def score(self, features: KineticFeatures) -> float:
        enhancement = min(max(features.max_enhancement_percent, 0.0) / 200.0, 1.0)
        value = 0.7 * CURVE_WEIGHTS[features.curve] + 0.3 * enhancement
        return round(float(np.clip(value, 0.0, 1.0)), 4)

    def explain(self, features: KineticFeatures, strings: Locale) -> str:
        return strings.text(
            "rule_derivation",
            weight=strings.number(CURVE_WEIGHTS[features.curve]),
            curve=strings.text(f"curve_{features.curve}"),
            enhancement=strings.number(features.max_enhancement_percent, 0),
            score=strings.number(self.score(features), 2),
        )


RULE_SCORER: Final = RuleScorer()


@dataclass(frozen=True)
class LogisticKineticScorer:
    """``sigmoid(intercept + coefficients . features)``; untrained unless its card says more."""

    spec: ModelSpec
    coefficients: tuple[float, ...]  # one per FEATURE_NAMES
    intercept: float

    def __post_init__(self) -> None:
        if len(self.coefficients) != len(FEATURE_NAMES):
            raise ValueError(f"need {len(FEATURE_NAMES)} coefficients, one per {FEATURE_NAMES}")
        if not all(math.isfinite(v) for v in (*self.coefficients, self.intercept)):
            raise ValueError("coefficients and intercept must be finite numbers")

    def score(self, features: KineticFeatures) -> float:
        z = self.intercept + float(np.dot(self.coefficients, features.vector()))
        return round(1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0))), 4)

    def explain(self, features: KineticFeatures, strings: Locale) -> str:
        terms = np.asarray(self.coefficients) * features.vector()
        largest = FEATURE_NAMES[int(np.argmax(np.abs(terms)))]
        return strings.text(
            "logistic_derivation",
            name=f"{self.spec.name} {self.spec.version}",
            feature=largest,
            score=strings.number(self.score(features), 2),
        )


def fit_logistic(
    features: Sequence[KineticFeatures],
    labels: Sequence[int],
    *,
    l2: float = 1e-2,
    iterations: int = 2000,
) -> tuple[tuple[float, ...], float]:
    """(coefficients, intercept) by gradient descent on the L2-penalised log loss.

    Small and deterministic: a handful of features, at most ``_MAX_ITERATIONS`` steps.
    """
    if len(features) != len(labels) or len(set(labels)) != 2 or set(labels) - {0, 1}:
        raise ValueError("need one 0/1 label per candidate, both classes present")
    if not 0 < iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iterations must lie in 1..{_MAX_ITERATIONS}")
    x = np.stack([f.vector() for f in features])
    y = np.asarray(labels, dtype=np.float64)
    weights, bias = np.zeros(x.shape[1]), 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ weights + bias, -60, 60)))
        weights -= 0.5 * (x.T @ (p - y) / len(y) + l2 * weights)
        bias -= 0.5 * float(np.mean(p - y))
    return tuple(float(w) for w in weights), float(bias)


def write_scorer_folder(
    models_dir: Path,
    scorer: LogisticKineticScorer,
    *,
    licence: str,
    evaluation: Mapping[str, Any],
    card: str,
) -> Path:
    """Write ``<models_dir>/<id>/<version>/`` (model.yaml and MODEL_CARD.md); returns it."""
    spec = scorer.spec
    folder = models_dir / spec.model_id / spec.version
    folder.mkdir(parents=True, exist_ok=True)
    raw = {
        "id": spec.model_id,
        "version": spec.version,
        "kind": KINETIC_LOGISTIC,
        "name": spec.name,
        "manufacturer": spec.manufacturer,
        "device_uid": spec.device_uid,
        "features": list(FEATURE_NAMES),
        "coefficients": dict(zip(FEATURE_NAMES, scorer.coefficients, strict=True)),
        "intercept": scorer.intercept,
        "operating_point": spec.operating_point,
        "training_data": spec.training_data,
        "intended_use": spec.intended_use,
        "licence": licence,
        "evaluation": dict(evaluation),
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return folder


def _fail(path: Path, message: str) -> InvalidModelConfig:
    return InvalidModelConfig(f"{path}: {message}")


def _parse(path: Path) -> tuple[LogisticKineticScorer, EvaluationSummary]:
    # Imported here: the mammography registry imports torch, which the kinetic analysis
    # (the default, rule-scored path) does not need.
    from node.models.promotion import EvaluationSummary
    from node.models.registry import MANUFACTURER, device_uid, version_key

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(path, f"cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise _fail(path, "must be a mapping")
    missing, unknown = sorted(set(_KEYS) - set(raw)), sorted(set(raw) - set(_KEYS))
    if missing or unknown:
        raise _fail(path, f"missing keys {missing}, unknown keys {unknown}")
    for key, kind in _KEYS.items():
        if kind is float and isinstance(raw[key], int) and not isinstance(raw[key], bool):
            raw[key] = float(raw[key])
        if not isinstance(raw[key], kind) or (isinstance(raw[key], str) and not raw[key].strip()):
            raise _fail(path, f"{key} must be a non-empty {kind.__name__}, got {raw[key]!r}")
    if raw["kind"] != KINETIC_LOGISTIC:
        raise _fail(path, f"kind must be {KINETIC_LOGISTIC!r}, got {raw['kind']!r}")
    model_id, version = raw["id"], raw["version"]
    try:
        version_key(version)
    except ValueError as exc:
        raise _fail(path, str(exc)) from exc
    if (path.parent.parent.name, path.parent.name) != (model_id, version):
        raise _fail(path, f"lies in {path.parent.parent.name}/{path.parent.name}")
    if raw["manufacturer"] != MANUFACTURER or raw["device_uid"] != device_uid(model_id, version):
        raise _fail(path, f"manufacturer must be {MANUFACTURER!r}, device_uid derived from id")
    if tuple(raw["features"]) != FEATURE_NAMES or set(raw["coefficients"]) != set(FEATURE_NAMES):
        raise _fail(path, f"features and coefficients must be exactly {list(FEATURE_NAMES)}")
    if not 0.0 < raw["operating_point"] < 1.0:
        raise _fail(path, "operating_point must lie strictly between 0 and 1")
    if "not for clinical use" not in raw["intended_use"].lower():
        raise _fail(path, "intended_use must say 'not for clinical use'")
    if not (path.parent / "MODEL_CARD.md").is_file():
        raise _fail(path, "MODEL_CARD.md is missing next to it (every model ships its card)")
    spec = ModelSpec(
        model_id=model_id,
        version=version,
        name=raw["name"][:64],
        manufacturer=raw["manufacturer"],
        device_uid=raw["device_uid"],
        intended_use=raw["intended_use"],
        training_data=raw["training_data"],
        operating_point=raw["operating_point"],
        finding_threshold=raw["operating_point"],
        input_size=(0, 0),
    )
    try:
        coefficients = tuple(float(raw["coefficients"][n]) for n in FEATURE_NAMES)
        scorer = LogisticKineticScorer(spec, coefficients, raw["intercept"])
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"coefficients: {exc}") from exc
    return scorer, EvaluationSummary.from_evaluation(raw["evaluation"])


def load_kinetic_scorer(
    models_dir: Path, ref: str, *, research_use: bool = False
) -> LogisticKineticScorer:
    """The learned scorer ``id/version`` under ``models_dir``, through the gate.

    Raises ModelNotFound, InvalidModelConfig, or PromotionRefused when the scorer has no
    evaluation on a locked set or was trained on synthetic data only (``research_use``
    lets it through, for phantom tests and experiments, never for a node's default).
    """
    model_id, _, version = ref.strip().strip("/").partition("/")
    path = Path(models_dir) / model_id / version / "model.yaml"
    if not version or not path.is_file():
        raise ModelNotFound(f"no kinetic scorer {ref!r} (id/version) at {path}")
    scorer, evaluation = _parse(path)
    if research_use:
        return scorer
    if evaluation.locked_set is None or evaluation.auc is None:
        raise PromotionRefused(
            f"kinetic scorer {ref} has no evaluation on a locked set (locked_set and auc in "
            "model.yaml): the rule-based score stays"
        )
    if synthetic_only(scorer.spec):
        raise PromotionRefused(
            f"kinetic scorer {ref} was trained on synthetic data only: the rule-based score stays"
        )
    return scorer
