"""The outbox: each job's outputs on disk (``<outbox>/job-<id>/<kind>/<SOPInstanceUID>.dcm``).

Why on disk: the outputs are written once and each destination is retried from here, so a
destination that is down never makes the node re-run the model. A job's folder stays until
every destination has the results (a dead letter keeps it, for an administrator's re-send).
With several node replicas it must be on a shared volume. Each output is encoded once, here:
destinations are sent the files' bytes (node.dicom.part10).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from node.dicom.part10 import Part10File, part10_bytes
from node.writers.outputs import Output


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: int) -> Path:
        return self.root / f"job-{job_id}"

    def holds(self, job_id: int) -> bool:
        return self.folder(job_id).is_dir()

    def write(self, job_id: int, outputs: Sequence[Output]) -> None:
        self.folder(job_id).mkdir(parents=True, exist_ok=True)  # held, even with no outputs
        for output in outputs:
            folder = self.folder(job_id) / output.kind
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{output.dataset.SOPInstanceUID}.dcm"
            partial = target.with_suffix(".part")
            partial.write_bytes(part10_bytes(output.dataset))
            partial.replace(target)  # atomic: a reader never sees half a file

    def files(self, job_id: int, kinds: Sequence[str]) -> list[Part10File]:
        """The job's output files of ``kinds``, by their file meta; FinalError for a file
        that is not DICOM."""
        files: list[Part10File] = []
        for kind in kinds:
            folder = self.folder(job_id) / kind
            if not folder.is_dir():
                continue  # this exam has no output of that kind
            files += [Part10File.of(path) for path in sorted(folder.glob("*.dcm"))]
        return files

    def remove(self, job_id: int) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
