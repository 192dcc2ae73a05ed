"""One publisher per destination kind, behind a small registry (mercure's ``target_types``).

A publisher sends datasets to one destination and says how many it accepted; a refusal
raises ``RetryableError`` (worth trying again) or ``FinalError`` (never will succeed) with
the statuses, judged by one rule for both kinds. Retrying is not its business: that is
``node.delivery.service``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from node.config import Destination
from node.dicom.part10 import Part10File
from node.errors import ConfigError, FinalError, RetryableError
from node.net.dicomweb import DicomWebClient
from node.net.dimse import peer_of, send


class Publisher(Protocol):
    """Sends the outbox's files to one destination; raises RetryableError or FinalError with
    the cause."""

    destination: Destination

    def publish(self, files: Sequence[Part10File]) -> int: ...


# Storage statuses worth retrying: Refused: Out of Resources (PS3.4 B.2.3). STOW-RS reports
# the same codes in Failure Reason (0008,1197).
_RETRYABLE_STORE_STATUS = range(0xA700, 0xA800)


def raise_for_refused(service: str, failed: Sequence[tuple[str, int]], total: int) -> None:
    """Raise when the peer refused some objects: retryable only if every refusal is."""
    if not failed:
        return
    statuses = ", ".join(f"0x{status:04X}" for _, status in failed)
    error = f"{service} refused {len(failed)} of {total} objects ({statuses})"
    if all(status in _RETRYABLE_STORE_STATUS for _, status in failed):
        raise RetryableError(error)
    raise FinalError(error)


class DicomWebPublisher:
    """STOW-RS to a DICOMweb root: the files' bytes as stored, never decoded again."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.client = DicomWebClient(destination, timeout=destination.timeout_seconds)

    def publish(self, files: Sequence[Part10File]) -> int:
        outcome = self.client.store(files)
        raise_for_refused("STOW-RS", outcome.failed, len(files))
        return len(outcome.stored)


class DimsePublisher:
    """C-STORE over one association. The files are decoded: the peer may accept another
    transfer syntax than the stored one, which needs the dataset to convert."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.peer = peer_of(destination)  # loads the TLS files now: a bad path fails at start

    def publish(self, files: Sequence[Part10File]) -> int:
        datasets = [file.dataset() for file in files]
        outcome = send(self.peer, datasets, timeout=self.destination.timeout_seconds)
        raise_for_refused("C-STORE", outcome.failed, len(datasets))
        return outcome.sent


#: Destination kind (``kind:`` in destinations.yaml) -> its publisher.
PUBLISHERS: dict[str, Callable[[Destination], Publisher]] = {
    "dicomweb": DicomWebPublisher,
    "dimse": DimsePublisher,
}


def publisher_for(destination: Destination) -> Publisher:
    """The publisher of a destination's kind; ConfigError for a kind without one."""
    factory = PUBLISHERS.get(destination.kind)
    if factory is None:
        raise ConfigError(
            f"destination {destination.name}: no publisher for kind {destination.kind!r} "
            f"(known: {', '.join(PUBLISHERS)})"
        )
    return factory(destination)
