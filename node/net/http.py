"""Where httpx's exceptions become the node's: both HTTP clients send through ``request``.

Modelled on httpx's own ``map_httpcore_exceptions``: a foreign exception is translated once,
here, with the cause chained, and nowhere else is httpx caught. A network fault, a timeout or
an answer that says "later" (5xx, 408, 429) is ``PeerUnavailable`` (retried); a refused
authentication is ``FinalError`` (retrying cannot help); every other status is the caller's to
read, because its meaning depends on the request (a 404 of WADO-RS is not a 404 of /changes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from node.errors import FinalError, PeerUnavailable


def request(
    client: httpx.Client, peer: str, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """Send one request to ``peer`` (a name for messages) and check the transport and status."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.ConnectError as error:
        refused = "refused" in str(error).lower()
        raise PeerUnavailable(
            f"{peer}: "
            + ("connection refused" if refused else "cannot connect")
            + f" ({client.base_url}: {error})"
        ) from error
    except httpx.HTTPError as error:  # timeouts, broken connections, protocol errors
        raise PeerUnavailable(f"{peer}: {type(error).__name__}: {error}") from error
    status = response.status_code
    if status >= 500 or status in (408, 429):
        raise PeerUnavailable(f"{peer}: HTTP {status} on {path}")
    if status in (401, 403):
        raise FinalError(
            f"{peer}: authentication failed, HTTP {status} (check username and password)"
        )
    return response


def json_of(response: httpx.Response, peer: str) -> Any:
    """The JSON body; an answer that is not JSON (a proxy's error page) is retried later."""
    try:
        return response.json()
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError
        raise PeerUnavailable(
            f"{peer}: the answer to {response.request.url.path} is not JSON: {error}"
        ) from error


def path_segment(value: str) -> str:
    """``value`` as one URL path segment (RFC 3986 3.3), whatever it holds: '/', '%', ';', NUL
    and '..' cannot steer a request (and the node's credentials) to another path. Callers
    validate UIDs first; this is the defence behind that."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted
