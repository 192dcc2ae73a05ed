"""Which model version is live, which runs in shadow, and how a new one gets promoted.

The record is ``<models_dir>/registry.yaml`` (``node.models.registry_file``); a candidate
becomes live only through the promotion gate (``node.models.promotion``): not worse than
the live model on the same locked validation set. ``--force --reason`` overrides the rule and
is recorded. Rollback replays the history as a stack (promote pushes, rollback pops), so two
rollbacks go two steps back, never ping-pong. The node's ``model`` setting, when set,
overrides the live model.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from node.config import PromotionMargins
from node.errors import (
    InvalidModelConfig,
    InvalidRegistryFile,
    LifecycleError,
    ModelNotFound,
    PromotionRefused,
)
from node.models.promotion import EvaluationSummary, check_promotion, evaluation_of
from node.models.registry import ModelFolder, find_model, load_model, parse_model_yaml, version_key
from node.models.registry_file import (
    REGISTRY_FILE,
    HistoryEntry,
    RegistryState,
    parse_registry,
    write_registry,
)


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


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        write_registry(self.path, state)


def live_model_ref(models_dir: Path, configured: str) -> str:
    """The model the node runs: the ``model`` setting when set, else the registry's live one."""
    if configured.strip():
        return configured.strip()
    return ModelLifecycle(models_dir).live_ref()
