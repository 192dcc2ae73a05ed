"""Catch up from Orthanc's /changes log, so no stable study is missed while the node was
down or the plugin's push failed. The last processed sequence number is persisted.

Orthanc keeps the studies still waiting for their stability delay in memory only: an Orthanc
killed (or stopped) within that delay after a study arrived never logs a StableStudy for it.
So every NewStudy is remembered (persisted too) until its StableStudy comes; one that Orthanc
calls stable without that change was lost to a restart, and is taken in like any other.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from node.errors import MammoNodeError, NotFound
from node.ingest.intake import ExamIntake
from node.jobs.store import JobStore
from node.net.orthanc_rest import Change

log = logging.getLogger(__name__)

SEQ_KEY = "orthanc_changes_seq"
WAITING_KEY = "orthanc_studies_waiting"  # NewStudy seen, StableStudy not yet
PAGE = 200
MAX_PAGES_PER_RUN = 50  # bounded: a huge backlog is worked through over several runs
MAX_WAITING = 5000  # bounded: the oldest are forgotten first (they are stable long since)
MAX_CHECKS_PER_RUN = 50  # studies asked about per run


class ChangeLog(Protocol):
    """The archive's change log (Orthanc's /changes, OrthancRest in the node)."""

    def changes(self, since: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        """One page after ``since``: (changes, last sequence number, done)."""
        ...

    def study_is_stable(self, study_id: str) -> bool:
        """Orthanc's own view (``IsStable``); NotFound when the study is gone."""
        ...


class Reconciler:
    def __init__(self, orthanc: ChangeLog, store: JobStore, intake: ExamIntake) -> None:
        self.orthanc = orthanc
        self.store = store
        self.intake = intake

    def run_once(self) -> int:
        """Process new changes; return how many stable studies were handled."""
        since = int(self.store.get_state(SEQ_KEY) or 0)
        waiting = self._waiting()
        handled = 0
        for _ in range(MAX_PAGES_PER_RUN):
            changes, last, done = self.orthanc.changes(since, PAGE)
            for change in changes:
                if change.change_type == "NewStudy":
                    waiting[change.resource_id] = change.seq
                if change.change_type != "StableStudy":
                    continue
                waiting.pop(change.resource_id, None)
                try:
                    self.intake.stable_study(change.resource_id)
                    handled += 1
                except NotFound:
                    log.info("study deleted before reconciliation", extra={"seq": change.seq})
                except MammoNodeError:
                    # Leave the sequence here: this page is tried again on the next run.
                    self._keep(waiting)
                    self.store.set_state(SEQ_KEY, str(since))
                    raise
                since = change.seq
            since = max(since, last)
            self._keep(waiting)
            self.store.set_state(SEQ_KEY, str(since))
            if done or not changes:
                break
        return handled + self._stable_without_change(waiting)

    def _stable_without_change(self, waiting: dict[str, int]) -> int:
        """Take in the waiting studies Orthanc calls stable: their StableStudy was lost."""
        handled = 0
        for study_id in sorted(waiting, key=waiting.__getitem__)[:MAX_CHECKS_PER_RUN]:
            try:
                if not self.orthanc.study_is_stable(study_id):
                    continue
                self.intake.stable_study(study_id)
                handled += 1
                log.warning(
                    "study stable without a StableStudy change (Orthanc restarted within "
                    "its stability delay); taken in",
                    extra={"orthanc_study": study_id},
                )
            except NotFound:
                pass  # deleted meanwhile: nothing to do
            except MammoNodeError:
                self._keep(waiting)
                raise  # Orthanc is away: asked again on the next run
            del waiting[study_id]
        self._keep(waiting)
        return handled

    def _waiting(self) -> dict[str, int]:
        try:
            stored = json.loads(self.store.get_state(WAITING_KEY) or "{}")
        except ValueError:
            stored = {}
        return {str(k): int(v) for k, v in stored.items()} if isinstance(stored, dict) else {}

    def _keep(self, waiting: dict[str, int]) -> None:
        newest = sorted(waiting.items(), key=lambda item: item[1])[-MAX_WAITING:]
        self.store.set_state(WAITING_KEY, json.dumps(dict(newest)))
