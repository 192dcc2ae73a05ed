"""Orthanc's own REST API: what the node needs to route studies and reconcile /changes.

httpx's exceptions become the node's in ``node.net.http``; a resource Orthanc does not have
(a study deleted meanwhile) is ``NotFound``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from node.errors import FinalError, NotFound
from node.net.http import json_of, path_segment, request

PEER = "Orthanc"
#: Instance headers kept (about 2 KB each): an exam's intake reads each header once, not once
#: per arriving instance (reading one makes Orthanc parse the stored file).
TAGS_CACHE_SIZE: Final = 4096


@dataclass(frozen=True)
class Change:
    seq: int
    change_type: str
    resource_type: str
    resource_id: str


@dataclass(frozen=True)
class InstanceTags:
    """The header fields routing needs, from one instance."""

    orthanc_id: str
    SOPInstanceUID: str
    SOPClassUID: str
    SeriesInstanceUID: str
    StudyInstanceUID: str
    Modality: str
    PresentationIntentType: str
    Manufacturer: str
    # Every simplified tag of the instance (sequences as lists of dicts): exam assembly reads
    # laterality and view from wherever the modality put them (node.dicom.views).
    header: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class OrthancRest:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), auth=(username, password), timeout=timeout
        )
        # Headers by (Orthanc id, stored file): a file stored again under the same id (deleted
        # and re-sent) has a new FileUuid, so its header is read again.
        self._tags: OrderedDict[tuple[str, str], InstanceTags] = OrderedDict()
        self._file_of: dict[str, str] = {}  # Orthanc id -> FileUuid, from study_instances
        self._tags_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer; NotFound for a resource Orthanc does not have."""
        response = request(self._http, PEER, method, path, **kwargs)
        if response.status_code == 404:
            raise NotFound(f"{PEER} has no {path}")
        if response.status_code != 200:
            raise FinalError(f"{PEER}: HTTP {response.status_code} on {path}")
        return json_of(response, PEER)

    def _get(self, path: str, **params: str | int) -> Any:
        return self._call("GET", path, params=params)

    def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/system")
        return result

    def plugins(self) -> list[str]:
        """The plugins Orthanc loaded (the node needs ``python`` and ``dicom-web``)."""
        return [str(name) for name in self._get("/plugins")]

    def now(self) -> str:
        """Orthanc's clock, UTC, as ``YYYYMMDDTHHMMSS`` (its ``/tools/now``)."""
        response = request(self._http, PEER, "GET", "/tools/now")
        if response.status_code != 200:
            raise FinalError(f"{PEER}: HTTP {response.status_code} on /tools/now")
        return response.text.strip()

    def changes(self, since: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        """One page of the change log: (changes, last seq, done)."""
        answer = self._get("/changes", since=since, limit=limit)
        changes = [
            Change(c["Seq"], c["ChangeType"], c["ResourceType"], c["ID"]) for c in answer["Changes"]
        ]
        return changes, int(answer["Last"]), bool(answer["Done"])

    def last_change(self) -> int:
        return int(self._get("/changes", last="")["Last"])

    def study_is_stable(self, study_id: str) -> bool:
        """Orthanc's ``IsStable`` of a study; NotFound when it is gone."""
        return bool(self._get(f"/studies/{path_segment(study_id)}").get("IsStable", False))

    def study_instances(self, study_id: str, *, except_manufacturer: str = "") -> list[str]:
        """Orthanc's ids of the study's instances; without those of the series whose
        Manufacturer (a series main tag in Orthanc's index) is ``except_manufacturer``: the
        node's own results need no header read (their files are as big as an exam's)."""
        instances = self._get(f"/studies/{path_segment(study_id)}/instances")
        skipped: set[str] = set()
        if except_manufacturer:
            skipped = {
                str(series.get("ID"))
                for series in self._get(f"/studies/{path_segment(study_id)}/series")
                if str(series.get("MainDicomTags", {}).get("Manufacturer", "")).strip()
                == except_manufacturer
            }
        instances = [i for i in instances if i.get("ParentSeries") not in skipped]
        with self._tags_lock:
            for instance in instances:
                if isinstance(instance.get("FileUuid"), str):
                    self._file_of[instance["ID"]] = instance["FileUuid"]
            while len(self._file_of) > TAGS_CACHE_SIZE:
                del self._file_of[next(iter(self._file_of))]
        return [i["ID"] for i in instances]

    def instance_tags(self, instance_id: str) -> InstanceTags:
        """The instance's header; read once per stored file when ``study_instances`` named
        the file (an unnamed one is read every time)."""
        with self._tags_lock:
            file_uuid = self._file_of.get(instance_id)
            key = (instance_id, file_uuid or "")
            cached = self._tags.get(key) if file_uuid else None
            if cached is not None:
                self._tags.move_to_end(key)
                return cached
        tags = self._read_tags(instance_id)
        if file_uuid:
            with self._tags_lock:
                self._tags[key] = tags
                while len(self._tags) > TAGS_CACHE_SIZE:
                    self._tags.popitem(last=False)
        return tags

    def _read_tags(self, instance_id: str) -> InstanceTags:
        tags = self._get(f"/instances/{path_segment(instance_id)}/simplified-tags")

        def text(name: str) -> str:
            value = tags.get(name, "")
            return value.strip() if isinstance(value, str) else ""

        return InstanceTags(
            orthanc_id=instance_id,
            SOPInstanceUID=text("SOPInstanceUID"),
            SOPClassUID=text("SOPClassUID"),
            SeriesInstanceUID=text("SeriesInstanceUID"),
            StudyInstanceUID=text("StudyInstanceUID"),
            Modality=text("Modality"),
            PresentationIntentType=text("PresentationIntentType"),
            Manufacturer=text("Manufacturer"),
            header=tags if isinstance(tags, dict) else {},
        )

    def find_instances(self, study_instance_uid: str) -> list[str]:
        """Orthanc's ids of the instances of one study (by its StudyInstanceUID)."""
        found = self._call(
            "POST",
            "/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_instance_uid}},
        )
        return [str(orthanc_id) for orthanc_id in found]

    def study_instance_count(self, study_instance_uid: str) -> int:
        found = self._call(
            "POST",
            "/tools/find",
            json={
                "Level": "Instance",
                "Query": {"StudyInstanceUID": study_instance_uid},
            },
        )
        return len(found)
