"""mammo-node plugin for Orthanc's embedded Python (stdlib only; imports nothing of node/).

Orthanc calls ``on_change`` for every change; the plugin only queues the ones it forwards and
returns at once, so DICOM reception is never blocked. A background thread forwards them to
the node over HTTP:
- a stable study, unless it became stable because of the node's own outputs (the most
  recently updated series is an SR/SEG/... written by the node);
- a new instance, as "its study grew" (once per study for instances queued together), unless
  the node wrote it: the node starts an exam at once when every expected view has arrived,
  instead of waiting for StableAge, and ignores the notice otherwise.
Nothing is lost when the node is down: it reconciles from Orthanc's /changes log.

A C-STORE that would leave the storage disk under its reserve is refused before Orthanc
writes a byte (Orthanc 1.10 out of space mid-write leaves a partial file behind); Orthanc
answers it with a failure status (0xA700, Refused: Out of Resources), so the modality keeps
the images and sends them again later.
"""

import json
import os
import queue
import threading
import urllib.error
import urllib.request

import orthanc

_SETTINGS = json.loads(orthanc.GetConfiguration()).get("MammoNode", {})
NODE_URL = str(_SETTINGS.get("NodeUrl", "http://127.0.0.1:8000")).rstrip("/")
TOKEN = str(_SETTINGS.get("Token", ""))
OWN_MANUFACTURER = str(_SETTINGS.get("OwnManufacturer", "mammo-node"))
TIMEOUT_SECONDS = float(_SETTINGS.get("TimeoutSeconds", 2.0))
QUEUE_SIZE = 10000
STORAGE_DIRECTORY = str(json.loads(orthanc.GetConfiguration()).get("StorageDirectory", "."))
RESERVE_BYTES = int(_SETTINGS.get("ReserveBytes", 64 * 2**20))
OUT_OF_RESOURCES = 0xA700  # C-STORE "Refused: Out of Resources" (PS3.4 Table B.2-1)

_STOP = object()
_events = queue.Queue(maxsize=QUEUE_SIZE)
_FORWARDED = {
    orthanc.ChangeType.STABLE_STUDY: "StableStudy",
    orthanc.ChangeType.NEW_INSTANCE: "NewInstance",
}


def is_own_output(series):
    """True for a series the node wrote (never analyse our own results: feedback loop)."""
    tags = series.get("MainDicomTags", {})
    return tags.get("Manufacturer", "") == OWN_MANUFACTURER


def newest_series_is_own_output(study_id):
    """True when the study's most recently updated series is one of the node's outputs."""
    series = json.loads(orthanc.RestApiGet(f"/studies/{study_id}/series"))
    if not series:
        return False
    newest = max(series, key=lambda s: s.get("LastUpdate", ""))
    return is_own_output(newest)


def study_of_new_instance(instance_id):
    """The study of a new instance, or None when the node wrote it or it is gone."""
    try:
        series = json.loads(orthanc.RestApiGet(f"/instances/{instance_id}/series"))
    except (ValueError, KeyError, RuntimeError):
        return None  # deleted meanwhile: the stable study (or /changes) still tells the node
    if is_own_output(series):
        return None
    return series.get("ParentStudy")


def forward(study_id, change_type="StableStudy"):
    """POST one change of a study to the node; False when the node could not take it."""
    body = json.dumps({"ChangeType": change_type, "ResourceType": "Study", "ID": study_id})
    request = urllib.request.Request(
        NODE_URL + "/api/v1/orthanc/changes",
        data=body.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as error:
        if change_type == "StableStudy":  # a new instance is told again by its stable study
            orthanc.LogWarning(
                f"mammo-node: node unreachable ({error}); it will reconcile from /changes"
            )
        return False


def _forward_stable(study_id):
    try:
        if newest_series_is_own_output(study_id):
            return
    except (ValueError, KeyError, RuntimeError) as error:
        # The study vanished or Orthanc answered oddly: let the node decide.
        orthanc.LogWarning(f"mammo-node: cannot inspect study {study_id}: {error}")
    forward(study_id)


def _forward_loop():
    grown = []  # studies with new instances, told once the queue has been drained
    while True:
        try:
            item = _events.get(block=not grown)
        except queue.Empty:
            for study_id in grown:
                forward(study_id, "NewInstance")
            grown = []
            continue
        if item is _STOP:
            return
        change_type, resource_id = item
        if change_type == "StableStudy":
            _forward_stable(resource_id)
            continue
        study_id = study_of_new_instance(resource_id)
        if study_id is not None and study_id not in grown:
            grown.append(study_id)


def refuse_when_disk_is_full(received_dicom):
    """Incoming C-STORE filter (Orthanc 1.10): 0 stores; a positive value is the DIMSE status
    of the refusal. The reserve rule is node.runtime.disk.reserve_bytes: 64 MiB, or a tenth
    of the disk."""
    try:
        stats = os.statvfs(STORAGE_DIRECTORY)
    except OSError:
        return 0  # cannot tell: let Orthanc try (it answers a failed write with a failure)
    free, total = stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
    reserve = min(RESERVE_BYTES, total // 10)
    if free - received_dicom.GetInstanceSize() < reserve:
        orthanc.LogError(
            f"mammo-node: C-STORE refused: {free // 2**20} MiB free in the storage directory,"
            f" {reserve // 2**20} MiB kept in reserve"
        )
        return OUT_OF_RESOURCES
    return 0


def on_change(change_type, level, resource_id):
    if change_type in _FORWARDED:
        try:
            _events.put_nowait((_FORWARDED[change_type], resource_id))
        except queue.Full:
            orthanc.LogWarning("mammo-node: event queue full; the node will reconcile")
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        _events.put(_STOP)


_worker = threading.Thread(target=_forward_loop, name="mammo-node-forwarder", daemon=True)
_worker.start()
orthanc.RegisterOnChangeCallback(on_change)
orthanc.RegisterIncomingCStoreInstanceFilter(refuse_when_disk_is_full)
orthanc.LogWarning(f"mammo-node plugin forwards new instances and stable studies to {NODE_URL}")
