"""Echo a destination: does it answer, before any result is sent to it?"""

from __future__ import annotations

from node.config import Destination
from node.net.dicomweb import DicomWebClient
from node.net.dimse import echo, peer_of


def echo_destination(destination: Destination) -> str:
    """Prove a destination answers: C-ECHO for DIMSE, a QIDO-RS query for DICOMweb.

    Returns what was checked; raises PeerUnavailable (refused connection, rejected or aborted
    association, server error) or FinalError (authentication failed) naming the cause.
    """
    if destination.kind == "dimse":
        peer = peer_of(destination)
        echo(peer, timeout=destination.timeout_seconds)
        return f"C-ECHO to {peer} succeeded"
    with DicomWebClient(destination, timeout=destination.timeout_seconds) as client:
        client.echo()
    return f"QIDO-RS on {destination.url} succeeded"
