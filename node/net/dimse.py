"""DIMSE with pynetdicom: C-STORE of files or datasets (modalities, the demo) and C-ECHO."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.errors import InvalidInput, PeerUnavailable

DEFAULT_TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    called_aet: str
    calling_aet: str = "MAMMONODE-SCU"


@dataclass(frozen=True)
class SendOutcome:
    sent: int
    failed: tuple[tuple[str, int], ...]  # (SOPInstanceUID, DIMSE status)


def _associate(
    peer: Peer, contexts: Sequence[tuple[str, Sequence[str]]], timeout: float
) -> Association:
    ae = AE(ae_title=peer.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for abstract_syntax, transfer_syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_aet)
    if assoc.is_rejected:
        raise PeerUnavailable(
            f"{peer.called_aet}@{peer.host}:{peer.port} rejected the association "
            f"(calling AE {peer.calling_aet} unknown to it, or wrong called AE title)"
        )
    if not assoc.is_established:
        raise PeerUnavailable(f"no association with {peer.called_aet}@{peer.host}:{peer.port}")
    return assoc


def echo(peer: Peer, timeout: float = 10.0) -> None:
    """C-ECHO: raises PeerUnavailable with the reason when the peer does not verify."""
    assoc = _associate(peer, [(Verification, DEFAULT_TRANSFER_SYNTAXES)], timeout)
    try:
        status = assoc.send_c_echo()
        if not status or status.Status != 0x0000:
            raise PeerUnavailable(f"C-ECHO to {peer.called_aet} failed: {status!r}")
    finally:
        assoc.release()


def read_files(paths: Sequence[Path]) -> list[pydicom.Dataset]:
    """Read DICOM files (directories recursively), raising InvalidInput with the file name."""
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    datasets: list[pydicom.Dataset] = []
    for file in files:
        try:
            datasets.append(pydicom.dcmread(file))
        except (InvalidDicomError, OSError) as error:
            raise InvalidInput(f"{file}: not a DICOM file ({error})") from error
    return datasets


def send(peer: Peer, datasets: Sequence[pydicom.Dataset], timeout: float = 30.0) -> SendOutcome:
    """C-STORE every dataset in one association."""
    # One context per SOP class, offering each dataset's own transfer syntax (so
    # compressed images go as they are) besides the uncompressed defaults.
    syntaxes: dict[str, list[str]] = {}
    for dataset in datasets:
        offered = syntaxes.setdefault(str(dataset.SOPClassUID), list(DEFAULT_TRANSFER_SYNTAXES))
        meta = getattr(dataset, "file_meta", None)
        own = (
            str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
        )
        if own and own not in offered:
            offered.insert(0, own)
    if len(syntaxes) > 128:  # PS3.8 9.3.2.2: at most 128 presentation contexts
        raise InvalidInput(f"{len(syntaxes)} SOP classes do not fit one association")
    assoc = _associate(peer, list(syntaxes.items()), timeout)
    failed: list[tuple[str, int]] = []
    sent = 0
    try:
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            if not status:
                # No response: the peer aborted (Orthanc does so for a calling AE it does
                # not allow to store) or the connection broke.
                raise PeerUnavailable(
                    f"{peer.called_aet}@{peer.host}:{peer.port} aborted the association during "
                    f"C-STORE after {sent} instances (is calling AE {peer.calling_aet} allowed to store?)"
                )
            code = int(status.Status)
            if code in (0x0000, 0xB000, 0xB007, 0xB006):
                sent += 1
            else:
                failed.append((str(dataset.SOPInstanceUID), code))
    finally:
        if assoc.is_established:
            assoc.release()
    return SendOutcome(sent=sent, failed=tuple(failed))
