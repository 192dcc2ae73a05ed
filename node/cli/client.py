"""The command line's client of the running node's API (found through its runtime file).

The API's answers are translated here, once: 404 is NotFound, 409 Conflict, 422
InvalidInput, a node that does not answer PeerUnavailable, each with the API's own
``detail``, so a command prints one clear line.
"""

from __future__ import annotations

from typing import Any

import httpx

from node.errors import Conflict, InvalidInput, MammoNodeError, NotFound, PeerUnavailable
from node.runtime.runfile import RunningNode

_STATUS: dict[int, type[MammoNodeError]] = {404: NotFound, 409: Conflict, 422: InvalidInput}


class NodeClient:
    """JSON calls to one running node, with its API token."""

    def __init__(self, running: RunningNode, timeout: float = 10.0) -> None:
        self.running = running
        self._http = httpx.Client(
            base_url=running.api_url,
            headers={"Authorization": f"Bearer {running.api_token}"},
            timeout=timeout,
        )

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise PeerUnavailable(
                f"the node at {self.running.api_url} (pid {self.running.pid}) does not answer: "
                f"{error}"
            ) from error
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        error_class = _STATUS.get(response.status_code, MammoNodeError)
        raise error_class(f"{detail} ({method} {path}: HTTP {response.status_code})")
