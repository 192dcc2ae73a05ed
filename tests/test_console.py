"""The admin console: server-rendered pages behind the node's own users and roles.

In-process here (a real Node, FastAPI's TestClient); in Debian Chromium against a real node
in tests/test_console_browser.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from node.api.app import create_api
from node.api.auth import LoginThrottle
from node.api.console import effective_configuration
from node.config import ConsoleUser
from node.errors import ConfigError
from node.models.lifecycle import ModelLifecycle
from node.runtime.node import Node
from tests.harness import make_settings

PROJECT_MODELS = Path(__file__).resolve().parent.parent / "models"
USERS = {
    "vera": ("viewer-secret", "viewer"),
    "otto": ("operator-secret", "operator"),
    "ada": ("admin-secret", "admin"),
}


def auth(name: str) -> tuple[str, str]:
    return name, USERS[name][0]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    tmp = tmp_path_factory.mktemp("console")
    shutil.copytree(PROJECT_MODELS, tmp / "models")
    # These pages are checked with the synthetic demonstration model live.
    registry = tmp / "models" / "registry.yaml"
    registry.write_text(
        re.sub(r"(?m)^live: .*$", "live: synthetic-unet/0.1.0", registry.read_text()),
        encoding="utf-8",
    )
    users = tuple(ConsoleUser(n, p, r) for n, (p, r) in USERS.items())
    return Node(
        make_settings(tmp / "data", models_dir=tmp / "models", workers=0, console_users=users)
    )


@pytest.fixture(scope="module")
def client(node: Node) -> Iterator[TestClient]:
    with TestClient(create_api(node), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


SAME_ORIGIN = {"Origin": "http://127.0.0.1:8000"}


def test_the_console_needs_a_console_user_not_orthancs_password(
    client: TestClient, node: Node
) -> None:
    assert client.get("/").status_code == 401
    orthanc = (node.settings.http_user, node.settings.http_password)
    assert client.get("/", auth=orthanc).status_code == 401
    assert client.get("/api/v1/jobs", auth=orthanc).status_code == 401
    assert client.get("/", auth=auth("vera")).status_code == 200


def test_the_api_description_and_its_page_need_a_user(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 401
    described = client.get("/openapi.json", auth=auth("vera"))
    assert described.status_code == 200 and "/api/v1/jobs" in described.json()["paths"]
    page = client.get("/docs", auth=auth("vera"))
    assert page.status_code == 200 and "/openapi.json" in page.text


def test_failed_logins_from_one_address_are_throttled(node: Node) -> None:
    with TestClient(create_api(node), base_url="http://127.0.0.1:8000") as fresh:
        assert fresh.get("/api/v1/jobs").status_code == 401  # no credentials: not a guess
        for _ in range(10):
            assert fresh.get("/api/v1/jobs", auth=("vera", "guess")).status_code == 401
        refused = fresh.get("/api/v1/jobs", auth=auth("vera"))  # even the right password
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_the_throttle_forgets_old_failures_and_successes_clear_it() -> None:
    now = [0.0]
    throttle = LoginThrottle(limit=3, window=60.0, clock=lambda: now[0], max_clients=2)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 60.0
    assert throttle.retry_after("10.0.0.2") == 0.0  # per address
    now[0] = 45.0
    assert throttle.retry_after("10.0.0.1") == 15.0
    now[0] = 60.5
    assert throttle.retry_after("10.0.0.1") == 0.0  # the window has passed
    throttle.failed("10.0.0.1")
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0.0  # the success cleared the earlier two
    for address in ("10.0.0.2", "10.0.0.3", "10.0.0.4"):
        for _ in range(3):
            throttle.failed(address)
    # At most max_clients addresses are remembered: the oldest are forgotten first.
    assert throttle.retry_after("10.0.0.1") == 0.0 and throttle.retry_after("10.0.0.2") == 0.0
    assert throttle.retry_after("10.0.0.4") > 0


def test_a_console_password_may_not_be_orthancs() -> None:
    with pytest.raises(ConfigError, match="other than Orthanc's"):
        make_settings(
            Path("var"),
            http_password="shared-secret",
            console_users=(ConsoleUser("ada", "shared-secret", "admin"),),
        )


@pytest.mark.parametrize(
    "path", ["/", "/jobs", "/jobs?state=failed", "/routing", "/deliveries", "/models"]
)
def test_every_page_says_the_live_model_is_synthetic_only(client: TestClient, path: str) -> None:
    page = client.get(path, auth=auth("vera"))
    assert page.status_code == 200, page.text
    assert "trained on synthetic images only" in page.text
    assert "synthetic-unet/0.1.0" in page.text


def test_a_viewer_reads_but_may_not_act(client: TestClient) -> None:
    assert (
        client.post("/models/rollback", auth=auth("vera"), headers=SAME_ORIGIN).status_code == 403
    )
    assert client.post("/api/v1/jobs/1/requeue", auth=auth("vera")).status_code == 403
    assert client.get("/configuration", auth=auth("vera")).status_code == 403
    assert client.get("/configuration", auth=auth("otto")).status_code == 403


def test_an_operator_acts_only_from_the_consoles_own_pages(client: TestClient) -> None:
    foreign = client.post(
        "/models/shadow",
        data={"ref": "mias-unet/1.0.0"},
        auth=auth("otto"),
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403


def test_an_operator_sets_a_shadow_model_recorded_in_the_history(
    client: TestClient, node: Node
) -> None:
    answer = client.post(
        "/models/shadow",
        data={"ref": "mias-unet/1.0.0", "reason": "compare on our exams"},
        auth=auth("otto"),
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "runs%20in%20shadow" in answer.headers["location"]
    last = ModelLifecycle(node.settings.models_dir).read().history[-1]
    assert (last.action, last.model) == ("shadow", "mias-unet/1.0.0")
    assert last.reason == "compare on our exams (otto, console)"
    models = client.get("/models", auth=auth("vera")).text
    assert "compare on our exams (otto, console)" in models


def test_an_unknown_job_is_404_and_requeue_says_why(client: TestClient) -> None:
    assert client.get("/jobs/999", auth=auth("vera")).status_code == 404
    answer = client.post(
        "/jobs/999/requeue", auth=auth("otto"), headers=SAME_ORIGIN, follow_redirects=False
    )
    assert answer.status_code == 303 and "error=no%20job%20999" in answer.headers["location"]


def test_the_configuration_page_shows_no_secret(client: TestClient, node: Node) -> None:
    page = client.get("/configuration", auth=auth("ada"))
    assert page.status_code == 200
    for secret in (node.settings.http_password, node.settings.api_token, "admin-secret"):
        assert secret not in page.text
    config = effective_configuration(node.settings)
    assert config["http_password"] == "***" and config["api_token"] == "***"
    assert config["console_users"][0] == {"name": "vera", "password": "***", "role": "viewer"}
