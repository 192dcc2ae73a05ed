"""DICOM access control of the embedded Orthanc, with real associations on loopback: a known
modality stores from its own host; the same AE title in another case, from another address
(127.0.0.2), or an unknown AE title is refused when it asks for an association."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation

from node.runtime.embedded import EmbeddedOrthanc
from node.synthetic.dicom import synthetic_exam
from tests.harness import make_settings, needs_orthanc, start_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedOrthanc]:
    settings = make_settings(Path(tmp_path_factory.mktemp("access")))
    orthanc = start_orthanc(settings)
    yield orthanc
    orthanc.stop()


def image() -> pydicom.Dataset:
    dataset, _truth = synthetic_exam(121)[0]
    return dataset


def store(orthanc: EmbeddedOrthanc, calling_aet: str, source: str = "127.0.0.1") -> str:
    """``stored``, ``rejected`` (no association) or the C-STORE status as hex."""
    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(DigitalMammographyXRayImageStorageForPresentation)
    assoc = ae.associate(
        "127.0.0.1",
        orthanc.settings.dicom_port,
        ae_title=orthanc.settings.aet,
        bind_address=(source, 0),
    )
    if not assoc.is_established:
        return "rejected" if assoc.is_rejected else "aborted"
    try:
        status = assoc.send_c_store(image())
        return "stored" if status and status.Status == 0 else f"0x{status.get('Status', 0):04X}"
    finally:
        assoc.release()


def test_a_known_modality_stores_from_its_host(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "MODALITY1") == "stored"


def test_the_ae_title_is_compared_case_sensitively(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "modality1") == "rejected"


def test_a_known_ae_title_from_another_host_is_refused(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "MODALITY1", source="127.0.0.2") == "rejected"


def test_an_unknown_caller_is_refused_at_association(orthanc: EmbeddedOrthanc) -> None:
    assert store(orthanc, "STRANGER") == "rejected"


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def certificate(folder: Path, name: str, ca: str, *, server: bool) -> None:
    """``name``.pem and ``name``.key signed by ``ca`` (a server's names 127.0.0.1)."""
    openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        folder / f"{name}.key",
        "-out",
        folder / f"{name}.csr",
    )
    extensions = folder / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        folder / f"{name}.csr",
        "-CA",
        folder / f"{ca}.pem",
        "-CAkey",
        folder / f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        extensions,
        "-out",
        folder / f"{name}.pem",
    )


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedOrthanc]:
    """An Orthanc whose DICOM port speaks TLS, with a test CA, server and client certificates."""
    folder = Path(tmp_path_factory.mktemp("tls"))
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mammo-node test CA",
        "-keyout",
        folder / "ca.key",
        "-out",
        folder / "ca.pem",
    )
    certificate(folder, "server", "ca", server=True)
    certificate(folder, "client", "ca", server=False)
    settings = make_settings(
        folder / "node",
        dicom_tls_cert_file=str(folder / "server.pem"),
        dicom_tls_key_file=str(folder / "server.key"),
        dicom_tls_ca_file=str(folder / "ca.pem"),
    )
    orthanc = start_orthanc(settings)
    yield orthanc
    orthanc.stop()


def tls_store(orthanc: EmbeddedOrthanc, *, client_certificate: bool) -> str:
    folder = Path(orthanc.settings.dicom_tls_ca_file).parent
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=folder / "ca.pem")
    if client_certificate:
        context.load_cert_chain(folder / "client.pem", folder / "client.key")
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(DigitalMammographyXRayImageStorageForPresentation)
    assoc = ae.associate(
        "127.0.0.1",
        orthanc.settings.dicom_port,
        ae_title=orthanc.settings.aet,
        tls_args=(context, "127.0.0.1"),
    )
    if not assoc.is_established:
        return "refused"
    try:
        status = assoc.send_c_store(image())
        return "stored" if status and status.Status == 0 else "no status"
    finally:
        assoc.release()


def test_a_tls_peer_with_a_client_certificate_stores(tls_orthanc: EmbeddedOrthanc) -> None:
    assert tls_store(tls_orthanc, client_certificate=True) == "stored"


def test_a_tls_peer_without_a_client_certificate_is_refused(
    tls_orthanc: EmbeddedOrthanc,
) -> None:
    assert tls_store(tls_orthanc, client_certificate=False) == "refused"


def test_plain_dicom_is_refused_when_tls_is_on(tls_orthanc: EmbeddedOrthanc) -> None:
    assert store(tls_orthanc, "MODALITY1") != "stored"
