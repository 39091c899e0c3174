"""An export that fails after its first byte must not reach the client as a whole file.

Served by granian through config.serve as in production: the failure ends the chunked body
without its last chunk, which HTTP clients report as an error, and the server logs it.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from feedback.services import FeedbackInput, PairwiseInput, submission_create
from tests.factories import MemberFactory, UserFactory, task_with_responses

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    db = settings.DATABASES["default"]
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1",
    }
    log = tmp_path / "web.log"
    serve = "from config.serve import serve; serve('tests.feedback.api.breaking_wsgi:application')"
    proc = subprocess.Popen(
        [sys.executable, "-c", serve],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/accounts/login/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_failure_mid_stream_breaks_the_download_and_is_logged(server, project, annotator):
    base, log = server
    for text in ("First question?", "Second question?", "BREAK on this one?"):
        task = task_with_responses(project, "pair", 2, text=text)
        submission_create(
            task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput("A", 2))
        )
    viewer = UserFactory(username="reader")
    MemberFactory(project=project, user=viewer, role="viewer")
    token = Token.objects.create(user=viewer).key
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        httpx.stream(
            "GET",
            f"{base}/api/projects/{project.pk}/export/?shape=pairs",
            headers={"Authorization": f"Token {token}"},
            timeout=30,
        ) as response,
    ):
        assert response.status_code == 200
        for block in response.iter_bytes():
            received += block
    # At most the two rows before the failure: granian drops a chunk it had not yet sent
    # when the app fails (1 try in 50 of a three-line app here, more often under load).
    assert received.count(b"\n") <= 2
    assert b"BREAK" not in received
    time.sleep(0.5)
    assert "broke off after the response started" in log.read_text()
