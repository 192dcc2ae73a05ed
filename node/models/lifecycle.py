"""Which model version is live, which runs in shadow, and how a new one gets promoted.

The record is ``<models_dir>/registry.yaml``, so it travels with the model folders and is
reviewed like them::

    live: synthetic-unet/0.1.0
    shadow: null                      # or id/version: runs beside live, never published
    history:                          # every change, oldest first, with its reason
    - {at: '2026-01-01T00:00:00Z', action: promote, model: synthetic-unet/0.1.0,
       previous: null, reason: ..., forced: false}

A candidate becomes live only when it is not worse than the live model on the same locked
validation set, as recorded in the ``evaluation`` block of each model.yaml, either as
``mammo-node evaluate --record`` writes it (the set is ``dataset_id/split``)::

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

``--force --reason`` overrides the rule and is recorded. Rollback replays the history as a
stack (promote pushes, rollback pops), so two rollbacks go two steps back, never ping-pong.
The node's ``model`` setting, when set, overrides the live model.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from node.config import PromotionMargins
from node.errors import (
    InvalidModelConfig,
    InvalidRegistryFile,
    LifecycleError,
    ModelNotFound,
    PromotionRefused,
)
from node.models.registry import ModelFolder, find_model, load_model, parse_model_yaml, version_key

REGISTRY_FILE = "registry.yaml"
ACTIONS = ("promote", "rollback", "shadow")
_KEYS = {"live", "shadow", "history"}
_ENTRY_KEYS = {"at", "action", "model", "previous", "reason", "forced"}
_HEADER = (
    "# The node's model lifecycle: the live model, the shadow model and every change.\n"
    "# Written by `mammo-node models promote | rollback | shadow`.\n"
)


@dataclass(frozen=True)
class HistoryEntry:
    at: str  # ISO 8601, UTC
    action: str  # promote | rollback | shadow
    model: str | None  # the model made live (or shadow; None when shadow was switched off)
    previous: str | None  # the live (or shadow) model before
    reason: str
    forced: bool = False


@dataclass(frozen=True)
class RegistryState:
    live: str
    shadow: str | None
    history: tuple[HistoryEntry, ...]

    def live_stack(self) -> list[str]:
        """The live models in the order they were made live, rollbacks popped."""
        stack: list[str] = []
        for entry in self.history:
            if entry.action == "promote" and entry.model:
                stack.append(entry.model)
            elif entry.action == "rollback" and stack:
                stack.pop()
        return stack


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


@dataclass(frozen=True)
class ModelEntry:
    """One model version as ``models list`` shows it."""

    ref: str
    name: str
    live: bool
    shadow: bool
    evaluation: EvaluationSummary


def ref_of(folder: ModelFolder) -> str:
    return folder.spec.ref


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


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_ref(path: Path, field: str, value: Any, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or value.count("/") != 1:
        raise InvalidRegistryFile(f"{path}: {field} must be 'id/version', got {value!r}")
    model_id, version = value.split("/")
    try:
        version_key(version)
    except ValueError as error:
        raise InvalidRegistryFile(f"{path}: {field}: {error}") from error
    if not model_id:
        raise InvalidRegistryFile(f"{path}: {field} has an empty model id")
    return value


def parse_registry(path: Path, text: str) -> RegistryState:
    """Validate registry.yaml strictly: a node must not start on a half-written record."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidRegistryFile(f"{path}: not YAML: {error}") from error
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise InvalidRegistryFile(f"{path}: needs exactly the keys {sorted(_KEYS)}, got {keys}")
    live = _check_ref(path, "live", raw["live"], optional=False)
    assert live is not None
    shadow = _check_ref(path, "shadow", raw["shadow"], optional=True)
    if not isinstance(raw["history"], list):
        raise InvalidRegistryFile(f"{path}: history must be a list")
    history = []
    for index, item in enumerate(raw["history"]):
        where = f"history[{index}]"
        if not isinstance(item, dict) or set(item) != _ENTRY_KEYS:
            raise InvalidRegistryFile(f"{path}: {where} needs exactly {sorted(_ENTRY_KEYS)}")
        if item["action"] not in ACTIONS:
            raise InvalidRegistryFile(f"{path}: {where}.action must be one of {ACTIONS}")
        if not isinstance(item["reason"], str) or not isinstance(item["forced"], bool):
            raise InvalidRegistryFile(f"{path}: {where}: reason is text, forced true/false")
        history.append(
            HistoryEntry(
                at=str(item["at"]),
                action=item["action"],
                model=_check_ref(path, f"{where}.model", item["model"], optional=True),
                previous=_check_ref(path, f"{where}.previous", item["previous"], optional=True),
                reason=item["reason"],
                forced=item["forced"],
            )
        )
    return RegistryState(live=live, shadow=shadow, history=tuple(history))


class ModelLifecycle:
    """Reads and changes registry.yaml; every change is locked, validated and atomic."""

    def __init__(self, models_dir: Path, clock: Callable[[], str] = _utc_now) -> None:
        self.models_dir = Path(models_dir)
        self.path = self.models_dir / REGISTRY_FILE
        self.clock = clock

    def read(self) -> RegistryState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError as error:
            raise InvalidRegistryFile(
                f"{self.path} does not exist: promote a first model with "
                "`mammo-node models promote ID/VERSION --reason TEXT`, or set `model`"
            ) from error
        return parse_registry(self.path, text)

    def live_ref(self) -> str:
        return self.read().live

    def shadow_ref(self) -> str | None:
        return self.read().shadow if self.path.exists() else None

    def models(self) -> list[ModelEntry]:
        """Every model version with its live/shadow markers and evaluation summary."""
        state = self.read() if self.path.exists() else None
        entries = []
        for yaml_path in sorted(self.models_dir.glob("*/*/model.yaml")):
            folder = parse_model_yaml(yaml_path)
            ref = ref_of(folder)
            entries.append(
                ModelEntry(
                    ref=ref,
                    name=folder.spec.name,
                    live=state is not None and state.live == ref,
                    shadow=state is not None and state.shadow == ref,
                    evaluation=evaluation_of(folder),
                )
            )
        entries.sort(key=lambda e: (e.ref.split("/")[0], version_key(e.ref.split("/")[1])))
        return entries

    # -- changes --------------------------------------------------------------------------

    def promote(
        self,
        ref: str,
        *,
        margins: PromotionMargins,
        reason: str | None = None,
        force: bool = False,
    ) -> HistoryEntry:
        """Make ``ref`` live if it is not worse than the live model (or ``force`` with a reason)."""
        if force and not (reason and reason.strip()):
            raise LifecycleError("--force needs --reason TEXT: the override is recorded")
        candidate = self._loadable(ref)
        with self._locked() as state:
            forced = False
            if state is not None:
                if state.live == candidate:
                    raise LifecycleError(f"{candidate} is already the live model")
                live_eval = evaluation_of(find_model(self.models_dir, state.live))
                cand_eval = evaluation_of(find_model(self.models_dir, candidate))
                try:
                    check_promotion(cand_eval, live_eval, margins)
                except PromotionRefused as refusal:
                    if not force:
                        raise PromotionRefused(
                            f"{candidate} not promoted over {state.live}: {refusal} "
                            "(override with --force --reason TEXT)"
                        ) from refusal
                    forced = True
                default_reason = f"not worse than {state.live} on {live_eval.locked_set}"
            else:
                default_reason = "first live model"
            entry = HistoryEntry(
                at=self.clock(),
                action="promote",
                model=candidate,
                previous=state.live if state else None,
                reason=(reason or "").strip() or default_reason,
                forced=forced,
            )
            shadow = state.shadow if state else None
            history = state.history if state else ()
            self._write(
                RegistryState(
                    live=candidate,
                    shadow=None if shadow == candidate else shadow,
                    history=(*history, entry),
                )
            )
        return entry

    def rollback(self, reason: str | None = None) -> HistoryEntry:
        """Return to the model that was live before the current one."""
        with self._locked() as state:
            if state is None:
                raise LifecycleError(f"{self.path} does not exist: nothing to roll back")
            stack = state.live_stack()
            if len(stack) < 2 or stack[-1] != state.live:
                raise LifecycleError(f"no earlier live model to return to from {state.live}")
            target = self._loadable(stack[-2])
            entry = HistoryEntry(
                at=self.clock(),
                action="rollback",
                model=target,
                previous=state.live,
                reason=(reason or "").strip() or f"rolled back from {state.live}",
            )
            self._write(
                RegistryState(
                    live=target,
                    shadow=None if state.shadow == target else state.shadow,
                    history=(*state.history, entry),
                )
            )
        return entry

    def set_shadow(self, ref: str | None, reason: str | None = None) -> HistoryEntry:
        """Run ``ref`` beside the live model (results stored, never published); None: stop."""
        candidate = self._loadable(ref) if ref is not None else None
        with self._locked() as state:
            if state is None:
                raise LifecycleError(f"{self.path} does not exist: promote a live model first")
            if candidate is not None and candidate == state.live:
                raise LifecycleError(f"{candidate} is the live model; a shadow must differ")
            entry = HistoryEntry(
                at=self.clock(),
                action="shadow",
                model=candidate,
                previous=state.shadow,
                reason=(reason or "").strip()
                or ("shadow mode on" if candidate else "shadow mode off"),
            )
            self._write(
                RegistryState(live=state.live, shadow=candidate, history=(*state.history, entry))
            )
        return entry

    # -- helpers --------------------------------------------------------------------------

    def _loadable(self, ref: str) -> str:
        """Resolve an explicit id/version and load it fully, so a broken model is refused now."""
        if ref.strip().strip("/").count("/") != 1:
            raise LifecycleError(f"name the version explicitly: ID/VERSION, not {ref!r}")
        try:
            folder = find_model(self.models_dir, ref)
            load_model(self.models_dir, ref, device="cpu")
        except (ModelNotFound, InvalidModelConfig) as error:
            raise LifecycleError(f"cannot use {ref}: {error}") from error
        return ref_of(folder)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[RegistryState | None]:
        """Hold an exclusive lock for a read-modify-write of the registry file."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        # The folder itself is the lock: the file is replaced on write, and no lock file
        # is left lying among the models.
        lock = os.open(self.models_dir, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self.read() if self.path.exists() else None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    def _write(self, state: RegistryState) -> None:
        document = {
            "live": state.live,
            "shadow": state.shadow,
            "history": [asdict(entry) for entry in state.history],
        }
        text = _HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        parse_registry(self.path, text)  # never write what could not be read back
        handle, temporary = tempfile.mkstemp(dir=self.models_dir, prefix=".registry-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def live_model_ref(models_dir: Path, configured: str) -> str:
    """The model the node runs: the ``model`` setting when set, else the registry's live one."""
    if configured.strip():
        return configured.strip()
    return ModelLifecycle(models_dir).live_ref()
