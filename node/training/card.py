"""model.yaml and MODEL_CARD.md of a trained model, in the registry's strict format.

``node.models.registry`` loads what this writes unchanged; ``evaluation`` (a free mapping
in model.yaml) records what the model was trained on (dataset id, splits, images) so that
``mammo-node evaluate`` can refuse to score a model on its own training images, and later the
validation figures ``evaluate --record`` measured. The synthetic demonstration model
(``node.training.synthetic``) records its held-out phantom figures there instead, and has a
card of its own (``render_synthetic_card``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from node.models.registry import CONTRALATERAL, MANUFACTURER, PREPROCESSING, device_uid
from node.training.config import TrainConfig
from node.training.contralateral_card import render_contralateral_card

TRAINING_IMAGES = "training_images.csv"


def network_kwargs(config: TrainConfig) -> dict[str, Any]:
    """LesionNet's arguments; the options appear only when on, so older folders read the same."""
    kwargs: dict[str, Any] = {"features": list(config.features), "top_k": config.top_k}
    if config.global_head:
        kwargs["global_head"] = True
    if config.flip_average:
        kwargs["flip_average"] = True
    return kwargs


def model_yaml(
    config: TrainConfig, trained_on: dict[str, Any], op: float, training: dict[str, Any]
) -> dict[str, Any]:
    """model.yaml of a model trained on a dataset folder (``mammo-node train``)."""
    described = config.training_data or f"dataset {trained_on['dataset_id']}"
    return registry_spec(
        replace(config, training_data=described),
        op,
        {"trained_on": trained_on, "training": training},
    )


def registry_spec(config: TrainConfig, op: float, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The fields ``node.models.registry`` reads, in its order, and a free ``evaluation``."""
    return {
        "id": config.model_id,
        "version": config.version,
        "name": config.name,
        "manufacturer": MANUFACTURER,
        "device_uid": device_uid(config.model_id, config.version),
        "network": {
            "architecture": "LesionNet",
            "kwargs": network_kwargs(config),
        },
        "input_size": list(config.input_size),
        "preprocessing": dict(PREPROCESSING),
        "operating_point": round(op, 4),
        "finding_threshold": config.finding_threshold,
        "training_data": config.training_data,
        "intended_use": config.intended_use,
        "licence": config.licence,
        "evaluation": evaluation,
    }


def read_model_yaml(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / "model.yaml").read_text(encoding="utf-8"))
    return data


def write_model_yaml(folder: Path, spec: dict[str, Any]) -> None:
    (folder / "model.yaml").write_text(
        yaml.safe_dump(spec, sort_keys=False, width=100), encoding="utf-8"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"{value[0]:.3f}–{value[1]:.3f}"
    return str(value)


def render_card(folder: Path) -> str:
    """MODEL_CARD.md from model.yaml (and its recorded validation, when there is one)."""
    spec = read_model_yaml(folder)
    ev = spec["evaluation"]
    trained, training = ev["trained_on"], ev["training"]
    rows, cols = spec["input_size"]
    kwargs = spec["network"]["kwargs"]
    size_kb = (folder / "weights.pt").stat().st_size // 1024
    lines = [
        f"# {spec['name']} — `{spec['id']}` {spec['version']}",
        "",
        "**NOT FOR CLINICAL USE.** Trained on a tiny public research data set; its figures have",
        "wide confidence intervals and say nothing about performance in a screening population.",
        "",
        "## What it is",
        f"A small 2-D U-Net (MONAI `BasicUNet`, features {kwargs['features']},",
        f"{size_kb} kB of weights) giving a lesion heatmap; the image score is a Platt-scaled",
        f"sigmoid of the mean of the top-{kwargs['top_k']} heatmap logits"
        + (
            " plus a linear read-out of the average- and max-pooled U-Net bottleneck."
            if kwargs.get("global_head")
            else "."
        )
        + (
            " Heatmap and score are averaged over the image and its up-down mirror image."
            if kwargs.get("flip_average")
            else ""
        ),
        f"Input: presentation pixels, breast turned chest wall left by laterality, scaled to {rows}x{cols}",
        "keeping the aspect ratio, divided by the median tissue value (`node.inference.runner.prepare`,",
        "the same function the node serves with).",
        f"Positive class: **{' + '.join(trained['positive_labels'])}** (vs the rest).",
        f"Operating point {spec['operating_point']} (chosen on the training images for sensitivity "
        f"{training.get('operating_sensitivity')}); finding threshold {spec['finding_threshold']}.",
        "",
        "## Training data",
        spec["training_data"],
        "",
        f"- dataset `{trained['dataset_id']}`, splits {trained['splits']}: {trained['images']} images "
        f"of {trained['patients']} patients ({trained['positives']} positive); the image list with "
        f"pixel hashes is `{TRAINING_IMAGES}`.",
        f"- {training['steps']} steps of batch {training['batch_size']} "
        + (
            f"of {training['crop'][0]}x{training['crop'][1]} lesion-centred crops "
            if training.get("crop")
            else "of whole images "
        )
        + f"({'balanced positive/negative' if training.get('balance') else 'unbalanced'}), seed "
        f"{training['seed']}, {training['seconds']} s on {training['device']} "
        f"({training['threads']} threads); Platt scaling fitted on the training images.",
        f"- Final training-set AUC {training.get('final_train_auc')} (optimistic by construction).",
    ]
    cv = training.get("cross_validation")
    if cv:
        lines += [
            "",
            f"## Cross-validation inside the training split ({cv['folds']} patient-level folds)",
            f"The recipe trained {cv['folds']} times, each time scored on the women it did not "
            "see (a woman's two breasts always in the same fold); the validation split is not "
            "used for choosing a recipe.",
            "",
            f"- AUC per fold {cv['fold_auc']}, mean {_fmt(cv['mean_fold_auc'])}; all "
            f"out-of-fold scores pooled {_fmt(cv['pooled_auc'])} (patient-bootstrap 95 % CI "
            f"{_fmt(cv['pooled_auc_ci'])}).",
        ]
        if "mean_fold_auc_without_flip" in cv:
            lines.append(
                f"- The same models without up-down flip averaging: mean fold AUC "
                f"{_fmt(cv['mean_fold_auc_without_flip'])}, pooled "
                f"{_fmt(cv['pooled_auc_without_flip'])}."
            )
    if trained.get("citation"):
        lines += ["", f"Data citation: {trained['citation']}"]
    validation = ev.get("validation")
    lines += ["", "## Validation (patient-level held-out split, never trained on)"]
    if not validation:
        lines.append("Not measured yet: run `mammo-node evaluate --record`.")
    else:
        lines += [
            f"Command: `{validation.get('command', '')}`",
            "",
            f"{validation['images']} images of {validation['patients']} patients "
            f"({validation['positives']} positive). 95 % CIs: patient-level bootstrap for AUC, "
            "Wilson intervals for proportions.",
            "",
            "| measure | value | 95 % CI |",
            "|---|---|---|",
        ]
        if validation.get("baseline"):
            base = validation["baseline"]
            lines.insert(
                len(lines) - 2,
                f"Baseline on the same images: `{base['model']}`, AUC {_fmt(base['auc'])} "
                f"({_fmt(base['ci'])}).\n",
            )
        for name, item in validation["figures"].items():
            if isinstance(item, dict):
                lines.append(f"| {name} | {_fmt(item.get('value'))} | {_fmt(item.get('ci'))} |")
            else:
                lines.append(f"| {name} | {_fmt(item)} | |")
    lines += [
        "",
        "## Limitations",
        "- mini-MIAS: digitised film (not digital mammography), MLO views only, 200 µm pixels",
        "  reduced further to the network's input; 214 images, so every figure is uncertain.",
        "- Calibration and the operating point were fitted on training images; check the",
        "  reliability plot and ECE of the evaluation before trusting a probability.",
        "- Calcifications are a few pixels at this resolution. Abnormal images without lesion",
        "  coordinates (spread calcifications) "
        + (
            "were left out (crops need a location)."
            if training.get("crop")
            else "teach only the image score."
        ),
        "- Served images must look like the training images: the node's digital mammograms have",
        "  the breast against the chest-wall edge; film scans with margins (raw mini-MIAS PNGs)",
        "  need `data import --crop-to-breast` first, or they are out of distribution.",
        "",
    ]
    return "\n".join(lines)


VALIDATION_HEADING = "## Validation on a locked set (mammo-node evaluate --record)"


def _validation_section(validation: dict[str, Any]) -> str:
    lines = [
        VALIDATION_HEADING,
        f"Command: `{validation.get('command', '')}`",
        "",
        f"{validation['images']} images of {validation['patients']} patients "
        f"({validation['positives']} positive).",
        "",
        "| measure | value | 95 % CI |",
        "|---|---|---|",
    ]
    for name, item in validation["figures"].items():
        if isinstance(item, dict):
            lines.append(f"| {name} | {_fmt(item.get('value'))} | {_fmt(item.get('ci'))} |")
        else:
            lines.append(f"| {name} | {_fmt(item)} | |")
    return "\n".join(lines) + "\n"


def write_card(folder: Path) -> None:
    """MODEL_CARD.md of a trained model, by its kind. A model not trained on a dataset folder
    (the synthetic one) keeps its own card, with the recorded validation appended."""
    spec = read_model_yaml(folder)
    path = folder / "MODEL_CARD.md"
    if spec.get("kind") == CONTRALATERAL:
        text = render_contralateral_card(folder)
    elif "trained_on" in spec["evaluation"]:
        text = render_card(folder)
    else:
        validation = spec["evaluation"].get("validation")
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        text = text.split(VALIDATION_HEADING)[0].rstrip("\n") + "\n"
        if validation:
            text += "\n" + _validation_section(validation)
    path.write_text(text, encoding="utf-8")


SYNTHETIC_CARD = """# {name} — `{id}` {version}

**NOT FOR CLINICAL USE.** This model has never seen a real mammogram.

## What it is
A small 2-D U-Net (MONAI `BasicUNet`, features {features}, {size_kb} kB of weights) that outputs a
lesion heatmap; the image score is a Platt-calibrated sigmoid of the mean of its top-{top_k} logits.
Input: presentation pixels (after Modality/VOI LUT and polarity), breast turned chest wall
left, scaled to {rows}x{cols} keeping the aspect ratio, divided by the median tissue value.

## Training data
{training}: {pool} pre-rendered 512x416 phantoms (35 % normal, 50 % with 1–2 masses, some
spiculated, part with a calcification cluster, 15 % calcification cluster only), random
laterality and view (CC/MLO), the training loop and augmentation of `mammo-node train`
(`node.training.loop`, `node.training.augment`: lesion-centred {crop} crops, vertical flip,
small affine, intensity scale, gamma, noise). Platt scaling fitted on {calib} further
phantoms. Trained on CPU, one thread, in {train_s} s.

## Measured on held-out synthetic phantoms (this training run)
| measure | value |
|---|---|
{table}

Operating point {op}: image score at or above it suggests recall. Finding threshold {ft}.

## What it can and cannot do
- It can find the bright, round or spiculated blobs and bright dot clusters that
  `node.synthetic.phantom` draws, so the node's pipeline (SEG, SR, heatmaps) can be tested end
  to end with known truth.
- It cannot detect cancer. Real masses, architectural distortion, asymmetries, real
  calcification morphology and real tissue texture are absent from its training data; its scores
  on real images mean nothing. Calcifications are small at {rows}x{cols}; see the measured figures.
"""


def render_synthetic_card(
    folder: Path, pool: int, calibration: int, crop: tuple[int, int], train_s: float
) -> str:
    """MODEL_CARD.md of the synthetic demonstration model, from its model.yaml."""
    spec = read_model_yaml(folder)
    rows, cols = spec["input_size"]
    kwargs = spec["network"]["kwargs"]
    return SYNTHETIC_CARD.format(
        name=spec["name"],
        id=spec["id"],
        version=spec["version"],
        features=kwargs["features"],
        top_k=kwargs["top_k"],
        size_kb=(folder / "weights.pt").stat().st_size // 1024,
        rows=rows,
        cols=cols,
        training=spec["training_data"],
        pool=pool,
        crop="x".join(map(str, crop)),
        calib=calibration,
        train_s=round(train_s),
        table="\n".join(f"| {k} | {v} |" for k, v in spec["evaluation"].items()),
        op=spec["operating_point"],
        ft=spec["finding_threshold"],
    )
