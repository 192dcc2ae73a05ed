"""Serve the OHIF viewer and Orthanc's DICOMweb from one origin.

Why one small server of our own: Orthanc asks for HTTP basic auth and listens on another
port. Proxying ``/dicom-web`` beside the viewer's static files keeps the password on the
server (the browser never sees it) and avoids CORS. The proxy is read-only (GET): the viewer
cannot store or delete through its credentials.

The proxy passes the node's own outputs (SR, SEG, ...) through as Orthanc stores them, as a
hospital's viewer would get them. It changes one thing, on SOURCE images only, for one
known OHIF 3.13 bug: images carrying VOI LUT Function (0028,1056) ``LINEAR`` render black
(OHIF's loader mangles the value; most real mammograms carry it). The proxy drops that
attribute where its value is ``LINEAR``, which is the meaning a window has without it
(PS3.3 C.11.2.1.3), so the viewer shows the same image. Bulk data URIs that Orthanc writes
to itself are pointed at the proxy, so the browser fetches them through it.

The viewer's files are the prebuilt ``dist`` of npm ``@ohif/app`` (``make viewer``); the
browser configuration is ``viewer/app-config.js`` and the mammography reading view
``viewer/mammo-reading.js`` (an OHIF extension and mode, loaded at runtime).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("node.runtime.viewer")

VIEWER_DIR = Path(__file__).resolve().parents[2] / "viewer"
DEFAULT_DIST = VIEWER_DIR / "node_modules" / "@ohif" / "app" / "dist"
DEFAULT_APP_CONFIG = VIEWER_DIR / "app-config.js"
# Files of ours served beside OHIF's dist (URL path -> file in viewer/).
OWN_FILES = ("/mammo-reading.js",)
DICOMWEB_PREFIX = "/dicom-web"
VOI_LUT_FUNCTION = "00281056"
MANUFACTURER = "00080070"
NODE_MANUFACTURER = "mammo-node"  # node.writers.provenance: what the node's outputs carry
JSON_TYPES = ("application/dicom+json", "application/json")
# Headers passed from the browser to Orthanc; anything else (cookies, auth) stays here.
FORWARDED_REQUEST_HEADERS = ("accept", "range", "if-none-match", "if-modified-since")
FORWARDED_RESPONSE_HEADERS = ("content-type", "etag", "last-modified", "content-range")
# Cross-origin isolation lets the image loader use SharedArrayBuffer; all is same-origin.
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


class ViewerNotInstalled(FileNotFoundError):
    """The OHIF dist is missing: ``make viewer`` installs it."""


def adapt_dicom_json(body: bytes) -> bytes:
    """DICOM JSON with the source images' VOI LUT Function workaround (module docstring).

    Drops (0028,1056) ``LINEAR`` from each top-level dataset that the node did not write;
    anything else, and any body with nothing to drop, passes through byte for byte.
    """
    if VOI_LUT_FUNCTION.encode() not in body:
        return body
    data: Any = json.loads(body)
    if not isinstance(data, list):
        return body
    changed = False
    for dataset in data:
        if isinstance(dataset, dict) and _is_source_with_linear_voi_lut_function(dataset):
            del dataset[VOI_LUT_FUNCTION]
            changed = True
    return json.dumps(data, separators=(",", ":")).encode() if changed else body


def _is_source_with_linear_voi_lut_function(dataset: dict[str, Any]) -> bool:
    return _first_value(dataset, VOI_LUT_FUNCTION) == "LINEAR" and (
        _first_value(dataset, MANUFACTURER) != NODE_MANUFACTURER
    )


def _first_value(dataset: dict[str, Any], tag: str) -> str:
    element = dataset.get(tag)
    if not isinstance(element, dict):
        return ""
    values = element.get("Value")
    return str(values[0]).strip() if isinstance(values, list) and values else ""


class ViewerServer:
    """OHIF's static files plus a read-only, authenticating DICOMweb proxy, on one port."""

    def __init__(
        self,
        upstream: str,
        auth: tuple[str, str] | None,
        *,
        dist: Path = DEFAULT_DIST,
        app_config: Path = DEFAULT_APP_CONFIG,
        own_files_dir: Path = VIEWER_DIR,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 60.0,
    ) -> None:
        if not (dist / "index.html").is_file():
            raise ViewerNotInstalled(f"no OHIF viewer in {dist}: run `make viewer`")
        if not app_config.is_file():
            raise ViewerNotInstalled(f"no viewer configuration at {app_config}")
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.dist = dist.resolve()
        self.app_config = app_config
        self.own_files = {path: own_files_dir / path.lstrip("/") for path in OWN_FILES}
        self.upstream = upstream.rstrip("/")
        self.client = httpx.Client(auth=auth, timeout=timeout)
        self.httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ViewerServer:
        """Serve in a background thread (tests, ``mammo-node up``)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="viewer", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def static_file(self, path: str) -> Path:
        """The dist file for a URL path; any unknown route is the single-page app's index."""
        if path == "/app-config.js":
            return self.app_config
        if path in self.own_files:
            return self.own_files[path]
        candidate = (self.dist / path.lstrip("/")).resolve()
        if candidate.is_relative_to(self.dist) and candidate.is_file():
            return candidate
        return self.dist / "index.html"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            viewer = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    viewer: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == DICOMWEB_PREFIX or path.startswith(DICOMWEB_PREFIX + "/"):
            self._proxy()
        else:
            self._static(path)

    def do_POST(self) -> None:
        self._refuse()

    def do_PUT(self) -> None:
        self._refuse()

    def do_DELETE(self) -> None:
        self._refuse()

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only viewer\n", {"Allow": "GET"})

    def _static(self, path: str) -> None:
        file = self.viewer.static_file(path)
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            content_type = "text/javascript"
        headers = {"Content-Type": content_type, **ISOLATION_HEADERS}
        if file.name in ("index.html", "app-config.js") or path in self.viewer.own_files:
            headers["Cache-Control"] = "no-cache"
        self._send(HTTPStatus.OK, file.read_bytes(), headers)

    def _proxy(self) -> None:
        headers = {
            name: value
            for name in FORWARDED_REQUEST_HEADERS
            if (value := self.headers.get(name)) is not None
        }
        try:
            upstream = self.viewer.client.get(self.viewer.upstream + self.path, headers=headers)
        except httpx.HTTPError as error:
            log.warning("DICOMweb upstream failed: %s", error)
            self._send(HTTPStatus.BAD_GATEWAY, f"upstream: {error}\n".encode(), {})
            return
        body = upstream.content
        content_type = upstream.headers.get("content-type", "")
        if upstream.status_code == 200 and content_type.startswith(JSON_TYPES):
            # Orthanc writes absolute BulkDataURIs to itself (e.g. an encapsulated PDF's
            # document): point them at this proxy, or the browser is sent where it may not go.
            own = self.viewer.url.encode()
            body = adapt_dicom_json(body.replace(self.viewer.upstream.encode(), own))
        out = {
            name.title(): value
            for name in FORWARDED_RESPONSE_HEADERS
            if (value := upstream.headers.get(name)) is not None
        }
        out["Cross-Origin-Resource-Policy"] = "same-origin"
        self._send(upstream.status_code, body, out)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
