"""What the live model was trained on, said plainly: a model that never saw a real
mammogram (its model.yaml ``training_data`` says synthetic) must not look like one that did,
in any command or page that shows its results."""

from __future__ import annotations

from node.domain import ModelSpec


def synthetic_only(spec: ModelSpec) -> bool:
    """True when the model's recorded training data is synthetic only."""
    return spec.training_data.strip().lower().startswith("synthetic")


def synthetic_only_warning(spec: ModelSpec) -> str | None:
    """One sentence for operators when ``synthetic_only``; None otherwise."""
    if not synthetic_only(spec):
        return None
    return (
        f"the model {spec.model_id}/{spec.version} was trained on synthetic images only; "
        "its scores on real mammograms mean nothing (promote a model trained on real "
        "mammograms: `mammo-node models list`)"
    )
