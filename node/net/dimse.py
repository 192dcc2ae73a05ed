"""DIMSE with pynetdicom: C-STORE of files or datasets (modalities, the demo, destinations)
and C-ECHO, optionally over TLS (PS3.15 B.1: an ssl.SSLContext passed as pynetdicom's
``tls_args``). A failed association is diagnosed and named: refused connection, rejected
association, or a peer that aborted (a TLS handshake that failed looks like that).

pynetdicom's exceptions are translated here, once, with the cause chained: a bad AE title is
ConfigError, a broken association PeerUnavailable, a dataset the peer does not accept or that
cannot be encoded FinalError / InvalidInput."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.config import Destination
from node.errors import ConfigError, FinalError, InvalidInput, PeerUnavailable

DEFAULT_TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    called_aet: str
    calling_aet: str = "MAMMONODE-SCU"
    tls: ssl.SSLContext | None = None

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}" + (" (TLS)" if self.tls else "")


def tls_context(ca_file: str, cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """A client context that verifies the peer against ``ca_file`` (and presents a client
    certificate when given: DICOM TLS with mutual authentication)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file or None)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"cannot load TLS files ({ca_file}, {cert_file}): {error}") from error
    return context


def peer_of(destination: Destination) -> Peer:
    """The DIMSE peer of a ``kind: dimse`` destination."""
    if destination.kind != "dimse":
        raise ConfigError(f"destination {destination.name} is not a DIMSE destination")
    tls = None
    if destination.uses_tls:
        tls = tls_context(
            destination.tls_ca_file, destination.tls_cert_file, destination.tls_key_file
        )
    return Peer(
        destination.host, destination.port, destination.called_aet, destination.calling_aet, tls
    )


def _diagnose(peer: Peer, timeout: float) -> str:
    """Why no association: probe the port once, so the error names the cause."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=min(timeout, 5.0)):
            pass
    except ConnectionRefusedError:
        return f"connection refused by {peer.host}:{peer.port} (nothing listens there)"
    except TimeoutError:
        return f"no answer from {peer.host}:{peer.port} within {min(timeout, 5.0):.0f} s"
    except OSError as error:
        return f"cannot connect to {peer.host}:{peer.port}: {error}"
    if peer.tls is not None:
        return f"{peer} accepted the connection but no association (TLS handshake failed?)"
    return f"{peer} accepted the connection but aborted before an association was made"


def _rejection(assoc: Association) -> str:
    """The peer's own words of an A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, reason."""
    primitive = assoc.acceptor.primitive
    if primitive is None or primitive.result is None:
        return "no reason given"
    return f"{primitive.result_str}, {primitive.source_str}: {primitive.reason_str}"


def _c_store(assoc: Association, peer: Peer, dataset: pydicom.Dataset) -> pydicom.Dataset:
    """One C-STORE, pynetdicom's exceptions translated (PS3.7 9.1.1)."""
    uid = dataset.get("SOPInstanceUID", "?")
    try:
        return assoc.send_c_store(dataset)
    except RuntimeError as error:  # the association ended under us
        raise PeerUnavailable(f"C-STORE of {uid} to {peer}: {error}") from error
    except AttributeError as error:  # no SOP class/instance UID, no transfer syntax
        raise InvalidInput(f"C-STORE of {uid}: {error}") from error
    except ValueError as error:  # no accepted presentation context, or not encodable
        raise FinalError(f"C-STORE of {uid} to {peer}: {error}") from error


@dataclass(frozen=True)
class SendOutcome:
    sent: int
    failed: tuple[tuple[str, int], ...]  # (SOPInstanceUID, DIMSE status)


def _associate(
    peer: Peer, contexts: Sequence[tuple[str, Sequence[str]]], timeout: float
) -> Association:
    tls_args = (peer.tls, peer.host) if peer.tls is not None else None
    try:
        ae = AE(ae_title=peer.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        for abstract_syntax, transfer_syntaxes in contexts:
            ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_aet, tls_args=tls_args)
    except (ValueError, TypeError) as error:  # pynetdicom validates the AE titles
        raise ConfigError(f"cannot associate with {peer}: {error}") from error
    if assoc.is_rejected:
        raise PeerUnavailable(
            f"{peer} rejected the association ({_rejection(assoc)}; "
            f"calling AE {peer.calling_aet} unknown to it, or wrong called AE title?)"
        )
    if not assoc.is_established:
        raise PeerUnavailable(f"no association with {peer}: {_diagnose(peer, timeout)}")
    return assoc


def echo(peer: Peer, timeout: float = 10.0) -> None:
    """C-ECHO: raises PeerUnavailable with the reason when the peer does not verify."""
    assoc = _associate(peer, [(Verification, DEFAULT_TRANSFER_SYNTAXES)], timeout)
    try:
        try:
            status = assoc.send_c_echo()
        except RuntimeError as error:  # the association ended under us
            raise PeerUnavailable(f"C-ECHO to {peer}: {error}") from error
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
    # Per SOP class, one context with the uncompressed defaults and one per compressed
    # transfer syntax the datasets carry: the acceptor picks one syntax per context
    # (PS3.8 9.3.2.2), so a compressed syntax offered beside the defaults would lose to
    # them and the compressed dataset could not be sent as it is.
    contexts: dict[tuple[str, str], list[str]] = {}
    for dataset in datasets:
        sop_class = str(dataset.SOPClassUID)
        contexts.setdefault((sop_class, ""), list(DEFAULT_TRANSFER_SYNTAXES))
        meta = getattr(dataset, "file_meta", None)
        own = (
            str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
        )
        if own and own not in DEFAULT_TRANSFER_SYNTAXES:
            contexts.setdefault((sop_class, own), [own])
    if len(contexts) > 128:  # PS3.8 9.3.2.2: at most 128 presentation contexts
        raise InvalidInput(f"{len(contexts)} presentation contexts do not fit one association")
    assoc = _associate(peer, [(sop, syntaxes) for (sop, _), syntaxes in contexts.items()], timeout)
    failed: list[tuple[str, int]] = []
    sent = 0
    try:
        for dataset in datasets:
            status = _c_store(assoc, peer, dataset)
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
