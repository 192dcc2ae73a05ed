"""The hot model switch: the live and shadow models follow ``registry.yaml`` without a
restart.

``mammo-node models promote | rollback | shadow`` and the console write registry.yaml (with
its history); the pipeline asks ``CurrentModel`` before each inference, which reloads the
models when the file changed. Inferences in flight finish with the model they started
with: a switch waits until none runs (a readers-writer lock), and a job's result names the
model that scored it. A model that cannot be loaded is logged and the running one kept.
A ``model`` setting pins the live model: the registry's live entry is then not followed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from node.errors import InvalidModelConfig, LifecycleError, ModelNotFound
from node.inference.scoring import ImageModel
from node.jobs.pipeline import ExamPipeline, ExamWork
from node.models.lifecycle import ModelLifecycle
from node.models.registry import load_model
from node.models.registry_file import REGISTRY_FILE
from node.review.shadow import ShadowRunner, ShadowStore

log = logging.getLogger(__name__)

Switched = Callable[[ImageModel], None]


def ref_of(model: ImageModel) -> str:
    return model.spec.ref


class CurrentModel:
    """Holds the pipeline's live and shadow models and swaps them between inferences."""

    def __init__(
        self,
        pipeline: ExamPipeline,
        models_dir: Path,
        shadow_store: ShadowStore,
        shadow: ShadowRunner | None,
        *,
        pinned: bool,
        on_switch: Switched,
        device: str = "auto",
    ) -> None:
        self.pipeline = pipeline
        self.models_dir = models_dir
        self.device = device  # where a newly promoted or shadow model computes
        self.shadow_store = shadow_store
        #: The shadow model now running; the node hands it each ExamScored event.
        self.shadow = shadow
        self.pinned = pinned
        self.on_switch = on_switch
        self._path = models_dir / REGISTRY_FILE
        self._seen = self._stamp()
        self._idle = threading.Condition()
        self._running = 0

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Around one inference: the models do not change meanwhile."""
        self.refresh()
        with self._idle:
            self._running += 1
        try:
            yield
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def refresh(self) -> bool:
        """Reload when registry.yaml changed; True when a model was switched."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        with self._idle:
            if stamp == self._seen:  # another worker switched meanwhile
                return False
            self._idle.wait_for(lambda: self._running == 0)
            self._seen = stamp
            return self._switch()

    def _switch(self) -> bool:
        lifecycle = ModelLifecycle(self.models_dir)
        live = ref_of(self.pipeline.model)
        try:
            wanted = live if self.pinned else lifecycle.live_ref()
            shadow_ref = lifecycle.shadow_ref()
            model = (
                self.pipeline.model
                if wanted == live
                else load_model(self.models_dir, wanted, self.device)
            )
            running_shadow = self.shadow
            shadow = None
            if shadow_ref is not None and shadow_ref != wanted:
                if running_shadow is not None and running_shadow.ref == shadow_ref:
                    shadow = running_shadow
                else:
                    shadow = ShadowRunner(
                        load_model(self.models_dir, shadow_ref, self.device),
                        self.shadow_store,
                        self.pipeline.expected_views,
                    )
        except (LifecycleError, ModelNotFound, InvalidModelConfig) as error:
            log.error("model switch refused; keeping %s: %s", live, error)
            return False
        changed = model is not self.pipeline.model or shadow is not self.shadow
        self.pipeline.model = model
        self.shadow = shadow
        if changed:
            log.info(
                "models switched",
                extra={
                    "live_model": ref_of(model),
                    "previous_live_model": live,
                    "shadow_model": shadow.ref if shadow is not None else None,
                },
            )
            self.on_switch(model)
        return changed


class SwitchingPipeline(ExamPipeline):
    """The exam pipeline whose inference asks ``current`` for the models first."""

    current: CurrentModel | None = None

    def infer(self, work: ExamWork) -> None:
        if self.current is None:
            super().infer(work)
            return
        with self.current.in_use():
            super().infer(work)
