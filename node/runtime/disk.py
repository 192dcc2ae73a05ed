"""Free space of the data dir, and the reserve below which new images are refused.

Orthanc 1.10 that runs out of space mid-write answers the C-STORE with a failure but leaves
the partial file behind, and its SQLite index needs room of its own. So the Orthanc plugin
refuses an incoming instance before a byte is written when storing it would leave less than
the reserve (the same rule as here), and the node reports the shortage in ``/healthz``, a
metric and its log, and takes images again by itself once space returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Kept free for Orthanc's index and the node's own files; a tenth of a small disk at most.
RESERVE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class FreeSpace:
    free: int
    total: int

    @property
    def reserve(self) -> int:
        return reserve_bytes(self.total)

    @property
    def low(self) -> bool:
        return self.free < self.reserve

    def describe(self) -> str:
        text = f"{self.free / 2**20:.0f} MiB free of {self.total / 2**20:.0f} MiB"
        if self.low:
            text += f": under the {self.reserve / 2**20:.0f} MiB reserve, new images are refused"
        return text


def reserve_bytes(total: int) -> int:
    """The plugin's rule too (orthanc/mammo_node_plugin.py): 64 MiB, or a tenth of the disk."""
    return min(RESERVE_BYTES, total // 10)


def free_space(path: Path) -> FreeSpace:
    """Of the file system holding ``path`` (or its nearest existing parent); OSError if none."""
    existing = path.resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    stats = os.statvfs(existing)
    return FreeSpace(stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize)
