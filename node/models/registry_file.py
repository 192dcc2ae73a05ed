"""registry.yaml: which model version is live, which runs in shadow, and every change.

The record is ``<models_dir>/registry.yaml``, so it travels with the model folders and is
reviewed like them::

    live: synthetic-unet/0.1.0
    shadow: null                      # or id/version: runs beside live, never published
    history:                          # every change, oldest first, with its reason
    - {at: '2026-01-01T00:00:00Z', action: promote, model: synthetic-unet/0.1.0,
       previous: null, reason: ..., forced: false}

This module reads and writes the file, strictly: a node must not start on a half-written
record, and nothing is written that could not be read back. Deciding what may change is
``node.models.promotion`` and ``node.models.lifecycle``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from node.errors import InvalidRegistryFile
from node.models.registry import version_key

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


def write_registry(path: Path, state: RegistryState) -> None:
    """Replace ``path`` atomically with ``state`` (checked by reading it back first)."""
    document = {
        "live": state.live,
        "shadow": state.shadow,
        "history": [asdict(entry) for entry in state.history],
    }
    text = _HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    parse_registry(path, text)  # never write what could not be read back
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".registry-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
