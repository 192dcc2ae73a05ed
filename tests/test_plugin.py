"""The Orthanc plugin outside Orthanc: a strict stub of the ``orthanc`` module (any call
not stubbed raises) and a real HTTP server on loopback standing in for the node."""

from __future__ import annotations

import importlib.util
import json
import queue
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "orthanc" / "mammo_node_plugin.py"


class StrictOrthanc(types.ModuleType):
    """Only what the plugin may use; anything else raises AttributeError."""

    class ChangeType:
        STABLE_STUDY = 10
        STABLE_SERIES = 9
        ORTHANC_STOPPED = 5
        NEW_INSTANCE = 1

    def __init__(self, node_url: str, series: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__("orthanc")
        self._config = {"MammoNode": {"NodeUrl": node_url, "Token": "secret", "TimeoutSeconds": 1}}
        self._series = series
        self.callbacks: list[Any] = []
        self.store_filters: list[Any] = []
        self.warnings: list[str] = []

    def GetConfiguration(self) -> str:
        return json.dumps(self._config)

    def RestApiGet(self, uri: str) -> str:
        parts = uri.split("/")
        if parts[1] == "instances" and parts[3:] == ["series"]:  # /instances/{id}/series
            if parts[2] not in INSTANCE_SERIES:
                raise ValueError("Unknown resource")
            return json.dumps(INSTANCE_SERIES[parts[2]])
        study_id = parts[2]
        if study_id not in self._series:
            raise ValueError("Unknown resource")
        return json.dumps(self._series[study_id])

    def RegisterOnChangeCallback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def RegisterIncomingCStoreInstanceFilter(self, callback: Any) -> None:
        self.store_filters.append(callback)

    def LogWarning(self, message: str) -> None:
        self.warnings.append(message)


class Node:
    """A loopback HTTP server that records what the plugin posts."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[dict[str, Any], str]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put((json.loads(body), self.headers.get("Authorization", "")))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def load_plugin(stub: StrictOrthanc) -> types.ModuleType:
    sys.modules["orthanc"] = stub
    spec = importlib.util.spec_from_file_location("mammo_node_plugin_under_test", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERIES = {
    "study-new": [
        {
            "ID": "a",
            "LastUpdate": "20261121T100000",
            "MainDicomTags": {"Modality": "MG", "Manufacturer": "ACME"},
        },
    ],
    "study-with-results": [
        {
            "ID": "a",
            "LastUpdate": "20261121T100000",
            "MainDicomTags": {"Modality": "MG", "Manufacturer": "ACME"},
        },
        {
            "ID": "b",
            "LastUpdate": "20261121T100500",
            "MainDicomTags": {"Modality": "SR", "Manufacturer": "mammo-node"},
        },
    ],
    "study-late-images": [
        {
            "ID": "b",
            "LastUpdate": "20261121T100500",
            "MainDicomTags": {"Modality": "SR", "Manufacturer": "mammo-node"},
        },
        {
            "ID": "a",
            "LastUpdate": "20261121T100900",
            "MainDicomTags": {"Modality": "MG", "Manufacturer": "ACME"},
        },
    ],
}


# The parent series of new instances, as Orthanc's /instances/{id}/series answers.
INSTANCE_SERIES = {
    f"mg-{index}": {
        "ID": "a",
        "ParentStudy": "study-new",
        "MainDicomTags": {"Modality": "MG", "Manufacturer": "ACME"},
    }
    for index in range(4)
} | {
    "own-sr": {
        "ID": "b",
        "ParentStudy": "study-with-results",
        "MainDicomTags": {"Modality": "SR", "Manufacturer": "mammo-node"},
    },
}


@pytest.fixture
def node() -> Iterator[Node]:
    server = Node()
    yield server
    server.close()


@pytest.fixture
def plugin(node: Node) -> Iterator[tuple[types.ModuleType, StrictOrthanc]]:
    stub = StrictOrthanc(node.url, SERIES)
    module = load_plugin(stub)
    yield module, stub
    module.on_change(stub.ChangeType.ORTHANC_STOPPED, 0, "")
    module._worker.join(5)
    sys.modules.pop("orthanc", None)


def test_registers_one_change_callback(plugin: tuple[types.ModuleType, StrictOrthanc]) -> None:
    module, stub = plugin
    assert stub.callbacks == [module.on_change]
    assert stub.store_filters == [module.refuse_when_disk_is_full]


def test_stable_study_is_forwarded_with_the_token(
    plugin: tuple[types.ModuleType, StrictOrthanc], node: Node
) -> None:
    module, stub = plugin
    module.on_change(stub.ChangeType.STABLE_STUDY, 0, "study-new")
    body, authorization = node.received.get(timeout=5)
    assert body == {"ChangeType": "StableStudy", "ResourceType": "Study", "ID": "study-new"}
    assert authorization == "Bearer secret"


def test_own_results_are_not_forwarded_but_late_images_are(
    plugin: tuple[types.ModuleType, StrictOrthanc], node: Node
) -> None:
    module, stub = plugin
    module.on_change(stub.ChangeType.STABLE_STUDY, 0, "study-with-results")
    module.on_change(stub.ChangeType.STABLE_STUDY, 0, "study-late-images")
    body, _ = node.received.get(timeout=5)
    assert body["ID"] == "study-late-images"
    assert node.received.empty()


def test_other_changes_are_ignored(
    plugin: tuple[types.ModuleType, StrictOrthanc], node: Node
) -> None:
    module, stub = plugin
    module.on_change(stub.ChangeType.STABLE_SERIES, 0, "series-a")
    module.on_change(stub.ChangeType.STABLE_STUDY, 0, "study-new")
    assert node.received.get(timeout=5)[0]["ID"] == "study-new"
    assert node.received.empty()


def test_new_instances_tell_their_study_once_per_burst_and_never_for_own_results(
    plugin: tuple[types.ModuleType, StrictOrthanc], node: Node
) -> None:
    """A new instance tells the node its study grew (the node then starts a complete exam
    at once); instances queued together tell it once; the node's own outputs never do."""
    module, stub = plugin
    with module._events.mutex:  # hold the forwarder back so the four arrive as one burst
        for index in range(4):
            module._events.queue.append(("NewInstance", f"mg-{index}"))
        module._events.queue.append(("NewInstance", "own-sr"))
        module._events.queue.append(("NewInstance", "deleted-meanwhile"))
        module._events.unfinished_tasks += 6
        module._events.not_empty.notify()
    body, authorization = node.received.get(timeout=5)
    assert body == {"ChangeType": "NewInstance", "ResourceType": "Study", "ID": "study-new"}
    assert authorization == "Bearer secret"
    module.on_change(stub.ChangeType.NEW_INSTANCE, 0, "mg-0")  # a later one tells it again
    assert node.received.get(timeout=5)[0] == body
    module.on_change(stub.ChangeType.STABLE_STUDY, 0, "study-new")
    assert node.received.get(timeout=5)[0]["ChangeType"] == "StableStudy"
    assert node.received.empty()


def test_node_down_is_logged_not_raised(node: Node) -> None:
    node.close()
    stub = StrictOrthanc(node.url, SERIES)
    module = load_plugin(stub)
    try:
        assert module.forward("study-new") is False
        assert any("node unreachable" in w for w in stub.warnings)
    finally:
        module.on_change(stub.ChangeType.ORTHANC_STOPPED, 0, "")
        module._worker.join(5)
        sys.modules.pop("orthanc", None)
