"""Who may do what: the plugin's token, and the console users' roles.

A GET needs a viewer, any other method an operator (re-queue, re-send, promote, feedback),
the configuration page an admin. The plugin's bearer token is the node's own machine
credential and may do everything. Orthanc's password opens nothing here: it is Orthanc's
full-admin secret, and the console has its own users (``Settings.console_users``).

Failed logins are throttled per client address (:class:`LoginThrottle`): a password cannot be
guessed at network speed, and a throttled address is told when to come back (429, Retry-After).

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from node.config import CONSOLE_ROLES, ConsoleUser

_RANK = {role: rank for rank, role in enumerate(CONSOLE_ROLES)}  # viewer < operator < admin
_READING = {"GET", "HEAD", "OPTIONS"}

log = logging.getLogger(__name__)


class LoginThrottle:
    """At most ``limit`` failed logins per client address within ``window`` seconds.

    Past that, every login from the address (a right password too) is refused until its
    oldest failure leaves the window, so a guesser gets ``limit`` tries a window. A success
    clears the address. At most ``max_clients`` addresses are remembered (the least recently
    failing are forgotten first), so a flood of addresses cannot grow memory without bound.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            failures = self._failures.get(client)
            if failures is None:
                return 0.0
            now = self.clock()
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0.0
            return failures[0] + self.window - now

    def failed(self, client: str) -> None:
        with self._lock:
            failures = self._failures.pop(client, None) or deque(maxlen=self.limit)
            failures.append(self.clock())
            self._failures[client] = failures  # most recent last
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            throttled = len(failures) == self.limit
        if throttled:
            log.warning(
                "failed logins: client throttled",
                extra={"client": client, "failures": self.limit, "window_seconds": self.window},
            )

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


def authenticator(
    api_token: str, users: tuple[ConsoleUser, ...], throttle: LoginThrottle | None = None
) -> Callable[..., Principal]:
    """A dependency that names the caller and checks the role the request's method needs;
    wrong credentials count against the caller's address (``throttle``)."""
    bearer = HTTPBearer(auto_error=False)
    basic = HTTPBasic(auto_error=False, realm="mammo-node")
    throttle = throttle or LoginThrottle()

    def authenticated(
        request: Request,
        token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    ) -> Principal:
        client = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(client)
        if wait > 0:
            raise HTTPException(
                429,
                "too many failed logins from this address; try again later",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        principal = None
        if token is not None and secrets.compare_digest(token.credentials, api_token):
            principal = Principal("orthanc-plugin", "admin")
        elif credentials is not None:
            for user in users:
                name_ok = secrets.compare_digest(credentials.username, user.name)
                if name_ok & secrets.compare_digest(credentials.password, user.password):
                    principal = Principal(user.name, user.role)
        if principal is None:
            if token is not None or credentials is not None:
                throttle.failed(client)  # a first request without credentials is no guess
            raise HTTPException(
                401, "authentication required", headers={"WWW-Authenticate": "Basic"}
            )
        throttle.succeeded(client)
        needed = "viewer" if request.method in _READING else "operator"
        if not principal.may(needed):
            raise HTTPException(403, f"{principal.name} is a {principal.role}; needs {needed}")
        return principal

    return authenticated


def require(role: str, principal: Principal) -> None:
    """Refuse a page or action that needs more than the request's method does."""
    if not principal.may(role):
        raise HTTPException(403, f"{principal.name} is a {principal.role}; needs {role}")
