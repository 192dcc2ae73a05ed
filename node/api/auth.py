"""Who may do what: the plugin's token, and the console users' roles.

A GET needs a viewer, any other method an operator (re-queue, re-send, promote, feedback),
the configuration page an admin. The plugin's bearer token is the node's own machine
credential and may do everything. Orthanc's password opens nothing here: it is Orthanc's
full-admin secret, and the console has its own users (``Settings.console_users``).

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

import secrets
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


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


def authenticator(api_token: str, users: tuple[ConsoleUser, ...]) -> Callable[..., Principal]:
    """A dependency that names the caller and checks the role the request's method needs."""
    bearer = HTTPBearer(auto_error=False)
    basic = HTTPBasic(auto_error=False, realm="mammo-node")

    def authenticated(
        request: Request,
        token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    ) -> Principal:
        principal = None
        if token is not None and secrets.compare_digest(token.credentials, api_token):
            principal = Principal("orthanc-plugin", "admin")
        elif credentials is not None:
            for user in users:
                name_ok = secrets.compare_digest(credentials.username, user.name)
                if name_ok & secrets.compare_digest(credentials.password, user.password):
                    principal = Principal(user.name, user.role)
        if principal is None:
            raise HTTPException(
                401, "authentication required", headers={"WWW-Authenticate": "Basic"}
            )
        needed = "viewer" if request.method in _READING else "operator"
        if not principal.may(needed):
            raise HTTPException(403, f"{principal.name} is a {principal.role}; needs {needed}")
        return principal

    return authenticated


def require(role: str, principal: Principal) -> None:
    """Refuse a page or action that needs more than the request's method does."""
    if not principal.may(role):
        raise HTTPException(403, f"{principal.name} is a {principal.role}; needs {role}")
