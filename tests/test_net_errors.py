"""Foreign exceptions become the node's once, at the net/ boundary, with the cause chained."""

from __future__ import annotations

import socket

import httpx
import pytest

from node.errors import ConfigError, FinalError, NotFound, PeerUnavailable
from node.net.dimse import Peer, echo
from node.net.http import json_of, request
from node.net.orthanc_rest import OrthancRest


def client_answering(status: int, body: bytes = b"{}") -> httpx.Client:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    return httpx.Client(base_url="http://peer", transport=httpx.MockTransport(answer))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_refused_connection_is_peer_unavailable_with_its_cause() -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=5) as client:
        with pytest.raises(PeerUnavailable, match="PACS: connection refused") as raised:
            request(client, "PACS", "GET", "/studies")
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_answers_that_say_later_are_retried(status: int) -> None:
    with pytest.raises(PeerUnavailable, match=f"HTTP {status} on /studies"):
        request(client_answering(status), "PACS", "GET", "/studies")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_authentication_is_final(status: int) -> None:
    with pytest.raises(FinalError, match="authentication failed"):
        request(client_answering(status), "PACS", "GET", "/studies")


def test_other_statuses_are_the_callers_to_read() -> None:
    assert request(client_answering(404), "PACS", "GET", "/studies").status_code == 404


def test_an_answer_that_is_not_json_is_retried() -> None:
    response = request(client_answering(200, b"<html>proxy error</html>"), "PACS", "GET", "/x")
    with pytest.raises(PeerUnavailable, match="not JSON") as raised:
        json_of(response, "PACS")
    assert isinstance(raised.value.__cause__, ValueError)


def test_a_study_orthanc_does_not_have_is_not_found() -> None:
    orthanc = OrthancRest("http://orthanc", "user", "password")
    orthanc._http = client_answering(404)
    with pytest.raises(NotFound, match="/studies/gone/instances"):
        orthanc.study_instances("gone")


def test_an_ae_title_pynetdicom_refuses_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must not exceed 16 characters") as raised:
        echo(Peer("127.0.0.1", free_port(), "A-CALLED-AE-TITLE-TOO-LONG"), timeout=2)
    assert isinstance(raised.value.__cause__, ValueError)
