"""Kinetic scorers: the rule (default) and the pluggable learned scorer, tested on phantoms only.

No labelled breast MRI is available, so the learned scorer is fitted to a stand-in label the
phantom knows (is the lesion's curve washout?). That proves the plumbing (features, fit,
model folder, gate, outputs), not anything about cancer: the gate refuses to let such a
scorer replace the rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from node.domain import ModelSpec
from node.errors import InvalidModelConfig, ModelNotFound, PromotionRefused
from node.models.registry import device_uid
from node.mri import kinetic_outputs
from node.mri.kinetics import LesionCandidate, analyse_volumes
from node.mri.phantom import make_dce_phantom
from node.mri.scoring import (
    CURVE_WEIGHTS,
    FEATURE_NAMES,
    RULE_SCORER,
    KineticFeatures,
    LogisticKineticScorer,
    fit_logistic,
    load_kinetic_scorer,
    write_scorer_folder,
)
from node.mri.summary import MRI_PDF_SERIES_NUMBER, MRI_SC_SERIES_NUMBER
from node.mri.summary_page import catalogues
from node.mri.synthetic_dicom import dce_study
from node.mri.writers import SR_SERIES_NUMBER

PHANTOM_ONLY = "synthetic: DCE phantoms only (stand-in label: washout curve); untrained"
CARD = "# Kinetic logistic scorer\n\nUntrained: fitted on synthetic phantoms only.\n"


def _candidates(seed: int) -> list[LesionCandidate]:
    phantom = make_dce_phantom(seed=seed, noise=0.04)
    result = analyse_volumes(
        [p.astype(np.float32) for p in phantom.phases],
        list(phantom.times_s),
        (phantom.slice_thickness_mm, phantom.pixel_spacing_mm, phantom.pixel_spacing_mm),
    )
    return result.candidates


def _spec(version: str = "0.0.1", training_data: str = PHANTOM_ONLY) -> ModelSpec:
    return ModelSpec(
        model_id="mri-kinetic-logistic",
        version=version,
        name="mammo-node kinetic logistic scorer",
        manufacturer="mammo-node",
        device_uid=device_uid("mri-kinetic-logistic", version),
        intended_use="Research only, untrained: not for clinical use",
        training_data=training_data,
        operating_point=0.5,
        finding_threshold=0.5,
        input_size=(0, 0),
    )


@pytest.fixture(scope="module")
def fitted() -> LogisticKineticScorer:
    train = [c for seed in (1, 2, 3) for c in _candidates(seed)]
    labels = [int(c.curve == "washout") for c in train]
    coefficients, intercept = fit_logistic([c.features for c in train], labels)
    return LogisticKineticScorer(_spec(), coefficients, intercept)


def test_rule_score_is_the_documented_formula() -> None:
    for curve, weight in CURVE_WEIGHTS.items():
        for enhancement in (50.0, 150.0, 400.0):
            features = KineticFeatures(curve, {curve: 1.0}, enhancement, 1.0, 500.0)
            expected = 0.7 * weight + 0.3 * min(enhancement / 200.0, 1.0)
            assert RULE_SCORER.score(features) == pytest.approx(expected, abs=1e-4)
    mri, _ = catalogues("en")
    washout = KineticFeatures("washout", {"washout": 1.0}, 150.0, 1.6, 500.0)
    assert RULE_SCORER.explain(washout, mri).endswith("= 0.79")  # 0.56 + 0.225


def test_learned_scorer_ranks_held_out_phantom_lesions(fitted: LogisticKineticScorer) -> None:
    held_out = _candidates(4)
    scores = {c.curve: fitted.score(c.features) for c in held_out}
    assert set(scores) == {"persistent", "plateau", "washout"}
    assert scores["washout"] > 0.5 > max(scores["persistent"], scores["plateau"])
    mri, _ = catalogues("en")
    assert "largest term" in fitted.explain(held_out[0].features, mri)


def test_fit_refuses_one_class_and_unbounded_runs() -> None:
    features = [KineticFeatures("washout", {"washout": 1.0}, 150.0, 1.6, 500.0)] * 2
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(features, [1, 1])
    with pytest.raises(ValueError, match="iterations"):
        fit_logistic(features, [0, 1], iterations=10**6)
    with pytest.raises(ValueError, match="coefficients"):
        LogisticKineticScorer(_spec(), (1.0,), 0.0)


def test_the_gate_keeps_the_rule_for_an_untrained_scorer(
    fitted: LogisticKineticScorer, tmp_path: Path
) -> None:
    write_scorer_folder(tmp_path, fitted, licence="Apache-2.0", evaluation={}, card=CARD)
    with pytest.raises(PromotionRefused, match="no evaluation on a locked set"):
        load_kinetic_scorer(tmp_path, "mri-kinetic-logistic/0.0.1")
    # an evaluation on a named set does not help a scorer that never saw a real breast MRI
    evaluation = {"locked_set": "phantom-seeds-4-8", "auc": 1.0}
    write_scorer_folder(tmp_path, fitted, licence="Apache-2.0", evaluation=evaluation, card=CARD)
    with pytest.raises(PromotionRefused, match="synthetic data only"):
        load_kinetic_scorer(tmp_path, "mri-kinetic-logistic/0.0.1")
    loaded = load_kinetic_scorer(tmp_path, "mri-kinetic-logistic/0.0.1", research_use=True)
    assert loaded == fitted
    with pytest.raises(ModelNotFound):
        load_kinetic_scorer(tmp_path, "mri-kinetic-logistic/9.9.9", research_use=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.pop("licence"), "missing keys"),
        (lambda raw: raw.update(kind="lesion-net"), "kind must be"),
        (lambda raw: raw.update(device_uid="1.2.3"), "device_uid"),
        (lambda raw: raw.update(features=list(FEATURE_NAMES[:-1])), "features"),
        (lambda raw: raw.update(intended_use="Screening"), "not for clinical use"),
        (lambda raw: raw["coefficients"].update(washout_fraction="x"), "coefficients"),
    ],
)
def test_a_bad_model_yaml_is_refused_with_the_reason(
    fitted: LogisticKineticScorer, tmp_path: Path, change: object, message: str
) -> None:
    folder = write_scorer_folder(tmp_path, fitted, licence="MIT", evaluation={}, card=CARD)
    raw = yaml.safe_load((folder / "model.yaml").read_text(encoding="utf-8"))
    change(raw)  # type: ignore[operator]
    (folder / "model.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(InvalidModelConfig, match=message):
        load_kinetic_scorer(tmp_path, "mri-kinetic-logistic/0.0.1", research_use=True)


def test_a_scorer_without_its_card_is_refused(
    fitted: LogisticKineticScorer, tmp_path: Path
) -> None:
    folder = write_scorer_folder(tmp_path, fitted, licence="MIT", evaluation={}, card=CARD)
    (folder / "MODEL_CARD.md").unlink()
    with pytest.raises(InvalidModelConfig, match=r"MODEL_CARD\.md"):
        load_kinetic_scorer(tmp_path, "mri-kinetic-logistic/0.0.1", research_use=True)


def test_outputs_carry_the_plugged_scorer(fitted: LogisticKineticScorer) -> None:
    datasets, _ = dce_study(1)
    result, outputs = kinetic_outputs(datasets, scorer=fitted, languages=("en",))
    expected = sorted(fitted.score(c.features) for c in result.candidates)
    assert sorted(c.score for c in result.candidates) == expected
    sr = next(ds for ds in outputs if ds.Modality == "SR")
    scores = sorted(
        float(item.MeasuredValueSequence[0].NumericValue)
        for container in sr.ContentSequence
        if container.ConceptNameCodeSequence[0].CodeValue == "126010"
        for group in container.ContentSequence
        for item in group.ContentSequence
        if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == "MRI004"
    )
    assert scores == pytest.approx(expected, abs=1e-4)
    comments = [i.TextValue for i in sr.ContentSequence if i.ValueType == "TEXT"]
    assert any(fitted.spec.name in c and "synthetic" in c for c in comments)
    _, by_rule = kinetic_outputs(datasets, languages=("en",))
    for series_number in (MRI_SC_SERIES_NUMBER, MRI_PDF_SERIES_NUMBER, SR_SERIES_NUMBER):
        learned, rule = (
            next(ds for ds in made if ds.SeriesNumber == series_number)
            for made in (outputs, by_rule)
        )
        assert learned.SOPInstanceUID != rule.SOPInstanceUID  # the scorer is in its identity
