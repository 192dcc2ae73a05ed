"""Catch up from Orthanc's /changes log, so no stable study is missed while the node was
down or the plugin's push failed. The last processed sequence number is persisted."""

from __future__ import annotations

import logging
from typing import Protocol

from node.errors import MammoNodeError, NotFound
from node.ingest.intake import ExamIntake
from node.jobs.store import JobStore
from node.net.orthanc_rest import Change

log = logging.getLogger(__name__)

SEQ_KEY = "orthanc_changes_seq"
PAGE = 200
MAX_PAGES_PER_RUN = 50  # bounded: a huge backlog is worked through over several runs


class ChangeLog(Protocol):
    """The archive's change log (Orthanc's /changes, OrthancRest in the node)."""

    def changes(self, since: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        """One page after ``since``: (changes, last sequence number, done)."""
        ...


class Reconciler:
    def __init__(self, orthanc: ChangeLog, store: JobStore, intake: ExamIntake) -> None:
        self.orthanc = orthanc
        self.store = store
        self.intake = intake

    def run_once(self) -> int:
        """Process new changes; return how many stable studies were handled."""
        since = int(self.store.get_state(SEQ_KEY) or 0)
        handled = 0
        for _ in range(MAX_PAGES_PER_RUN):
            changes, last, done = self.orthanc.changes(since, PAGE)
            for change in changes:
                if change.change_type != "StableStudy":
                    continue
                try:
                    self.intake.stable_study(change.resource_id)
                    handled += 1
                except NotFound:
                    log.info("study deleted before reconciliation", extra={"seq": change.seq})
                except MammoNodeError:
                    # Leave the sequence here: this page is tried again on the next run.
                    self.store.set_state(SEQ_KEY, str(since))
                    raise
                since = change.seq
            since = max(since, last)
            self.store.set_state(SEQ_KEY, str(since))
            if done or not changes:
                break
        return handled
