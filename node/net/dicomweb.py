"""A small DICOMweb client: WADO-RS instance retrieval, STOW-RS store, QIDO-RS echo.

Transport errors, 5xx and refused authentication are translated in ``node.net.http``
(PeerUnavailable: retried; FinalError: not); this module reads the statuses that depend on
the request (InvalidInput, final, for answers that say the request itself is wrong).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pydicom
from pydicom.errors import InvalidDicomError

from node.config import Destination
from node.dicom.part10 import Part10File
from node.dicom.uids import is_valid_uid
from node.errors import FinalError, InvalidInput, MammoNodeError
from node.net.http import json_of, path_segment, request
from node.net.multipart import boundary_of, build_related, split_parts

_DICOM_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# Instances are fetched as stored, never gzipped: an uncompressed mammogram costs the archive
# far more CPU to deflate than the wire saves (Orthanc: 0.89 s per 17 MB instance with gzip,
# 0.18 s without, bench/node_overhead.py), and a compressed one does not shrink.
_RETRIEVE_HEADERS = {"Accept": _DICOM_MULTIPART, "Accept-Encoding": "identity"}


@dataclass(frozen=True)
class StoreOutcome:
    stored: tuple[str, ...]  # SOPInstanceUIDs the peer accepted
    failed: tuple[tuple[str, int], ...]  # (SOPInstanceUID, FailureReason)


class DicomWebClient:
    def __init__(self, destination: Destination, timeout: float = 60.0) -> None:
        self.destination = destination
        auth = None
        if destination.username is not None:
            auth = httpx.BasicAuth(destination.username, destination.password or "")
        self._http = httpx.Client(base_url=destination.url.rstrip("/"), auth=auth, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return request(self._http, self.destination.name, method, path, **kwargs)

    def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> pydicom.Dataset:
        """WADO-RS RetrieveInstance (PS3.18 10.4), in the stored transfer syntax."""
        for uid in (study_instance_uid, series_instance_uid, sop_instance_uid):
            if not is_valid_uid(uid):
                raise InvalidInput("not retrieved: an invalid UID (PS3.5 9.1) in the request")
        path = "/studies/{}/series/{}/instances/{}".format(
            *map(path_segment, (study_instance_uid, series_instance_uid, sop_instance_uid))
        )
        response = self._request("GET", path, headers=_RETRIEVE_HEADERS)
        if response.status_code == 404:
            raise InvalidInput(self._not_found(sop_instance_uid))
        if response.status_code != 200:
            raise InvalidInput(f"{self.destination.name}: HTTP {response.status_code} on WADO-RS")
        try:
            parts = split_parts(
                response.content, boundary_of(response.headers.get("content-type", ""))
            )
        except ValueError as error:  # a malformed multipart answer: asking again cannot help
            raise InvalidInput(
                f"{self.destination.name}: unreadable WADO-RS answer: {error}"
            ) from error
        if len(parts) != 1:
            raise InvalidInput(f"WADO-RS returned {len(parts)} parts for one instance")
        try:
            return pydicom.dcmread(io.BytesIO(parts[0]))
        except (
            InvalidDicomError,
            EOFError,
            ValueError,
            KeyError,
            struct.error,
            zlib.error,
        ) as error:
            raise InvalidInput(
                f"instance {sop_instance_uid} is not readable DICOM: {error}"
            ) from error

    def _not_found(self, sop_instance_uid: str) -> str:
        """Why WADO-RS answered 404, as far as QIDO-RS can tell: gone, or not one instance.

        Orthanc rewrites some invalid UIDs as it stores them (it drops spaces: "1.2.3 4" is
        indexed as "1.2.34"), so two sent instances can end up under one SOP Instance UID,
        and its WADO-RS then serves neither."""
        try:
            response = self._request(
                "GET",
                "/instances",
                params={"SOPInstanceUID": sop_instance_uid, "includefield": "0020000D"},
                headers={"Accept": "application/dicom+json"},
            )
            if response.status_code == 204 or (
                response.status_code == 200 and not response.content
            ):
                held = 0
            elif response.status_code == 200:
                found = json_of(response, self.destination.name)
                held = len(found) if isinstance(found, list) else -1
            else:
                held = -1
        except MammoNodeError:
            held = -1  # QIDO-RS cannot tell either
        where = self.destination.name
        if held == 0:
            return f"instance {sop_instance_uid} is no longer in {where}"
        if held > 1:
            return (
                f"{where} holds {held} instances under SOP Instance UID {sop_instance_uid} "
                "and its WADO-RS serves none of them (an archive may rewrite an invalid UID "
                "into another one's, e.g. by dropping spaces)"
            )
        return f"{where} lists instance {sop_instance_uid} but its WADO-RS does not serve it"

    def search_instances(self, study_instance_uid: str) -> list[tuple[str, str]]:
        """QIDO-RS SearchForInstances in one study (PS3.18 10.6): (series, SOP instance) UIDs."""
        response = self._request(
            "GET",
            f"/studies/{path_segment(study_instance_uid)}/instances",
            headers={"Accept": "application/dicom+json"},
        )
        if response.status_code == 204 or (response.status_code == 200 and not response.content):
            return []
        if response.status_code != 200:
            raise InvalidInput(
                f"{self.destination.name}: QIDO-RS answered HTTP {response.status_code}"
            )
        found = []
        for item in json_of(response, self.destination.name):
            series = item.get("0020000E", {}).get("Value", [""])[0]  # SeriesInstanceUID
            sop = item.get("00080018", {}).get("Value", [""])[0]  # SOPInstanceUID
            if series and sop:
                found.append((str(series), str(sop)))
        return found

    def store(self, files: Sequence[Part10File]) -> StoreOutcome:
        """STOW-RS (PS3.18 10.5) of stored Part 10 files, sent as they are; instances the
        peer already holds count as stored."""
        body, content_type = build_related(file.read_bytes() for file in files)
        response = self._request(
            "POST",
            "/studies",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
        if response.status_code not in (200, 202, 409):
            raise FinalError(
                f"{self.destination.name}: STOW-RS answered HTTP {response.status_code}"
            )
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        failed = []
        for item in answer.get("00081198", {}).get("Value", []):  # FailedSOPSequence
            uid = item.get("00081155", {}).get("Value", [""])[0]
            reason = int(item.get("00081197", {}).get("Value", [0])[0])
            failed.append((uid, reason))
        failed_uids = {uid for uid, _ in failed}
        stored = tuple(f.sop_instance_uid for f in files if f.sop_instance_uid not in failed_uids)
        return StoreOutcome(stored=stored, failed=tuple(failed))

    def echo(self) -> None:
        """QIDO-RS query for one study: proves the address, auth and DICOMweb service."""
        response = self._request(
            "GET", "/studies", params={"limit": "1"}, headers={"Accept": "application/dicom+json"}
        )
        if response.status_code not in (200, 204):
            raise FinalError(
                f"{self.destination.name}: QIDO-RS answered HTTP {response.status_code}"
            )
