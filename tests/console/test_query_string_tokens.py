"""A token in a query string is refused (400, saying why and how to send it) and never written
to a log: Django's logs go through the scrubber, and daphne's access log (written straight to a
stream, not through logging) is scrubbed by console/web.py, checked here on a real daphne."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from console import tokens
from console.roles import Role
from tests.console import test_logs_carry_no_phi
from tests.support import REPO, database_url_for_processes, free_port, wait_for

logs = test_logs_carry_no_phi.logs  # the fixture that captures every log line


def issue() -> str:
    account = tokens.service_account("query-feed")
    return tokens.issue(account, Role.OPERATOR, lifetime=timedelta(hours=1)).secret


def secret_part(token: str) -> str:
    return token[len("hub_") + 13 :]  # after hub_<12-character prefix>_


def prefix_part(token: str) -> str:
    return token[: len("hub_") + 13]


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["access_token", "token", "api_key", "q"])
def test_a_token_in_the_query_string_is_refused_naming_why(client, param):
    token = issue()
    response = client.get(f"/api/v1/messages/?{param}={token}")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert f"'{param}'" in detail and "Authorization: Bearer" in detail
    # Even with a valid token in the header: the one in the URL is refused, not ignored.
    response = client.get(
        f"/api/v1/messages/?{param}={token}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 400
    assert client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


@pytest.mark.django_db
def test_django_logs_scrub_a_token_wherever_it_is(logs):
    token = issue()
    logging.getLogger("django.request").warning("Bad Request: /api/v1/messages/?q=%s", token)
    logging.getLogger("django.server").info('"GET /x/?api_key=%s HTTP/1.1" 400', "k-SECRET-99")
    text = logs()
    assert "Bad Request" in text and "k-SECRET-99" not in text
    assert secret_part(token) not in text and prefix_part(token) in text  # the prefix stays


@pytest.fixture
def web(transactional_db, tmp_path):
    """The web process as `make run` starts it (python -m console.web), its output in a file."""
    port = free_port()
    output = tmp_path / "web.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_processes(),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "console.web", "-b", "127.0.0.1", "-p", str(port)]
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [*command, "console.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/login/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, what="console.web to serve")
        yield base, output.read_text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_daphnes_access_log_never_carries_the_token(web):
    base, written = web
    token = issue()
    urls = [
        f"/api/v1/messages/?access_token={token}",
        f"/api/v1/messages/?channel=1&q={token}",
        "/api/v1/messages/?api_key=k-SECRET-4242",
    ]
    for url in urls:
        assert httpx.get(base + url, timeout=10).status_code == 400
    wait_for(lambda: written().count("/api/v1/messages/?") >= 3, what="three access-log entries")
    text = written()
    assert secret_part(token) not in text and "k-SECRET-4242" not in text
    assert "access_token=[redacted]" in text and "400" in text
