"""The web server's settings and the WSGI entry point it serves."""

import pytest

from config.serve import bind_address
from config.wsgi import _PROCESS_ENVIRONMENT, without_process_environment


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("0.0.0.0:8000", ("0.0.0.0", 8000)),
        ("127.0.0.1", ("127.0.0.1", 8000)),
        ("[::]:8001", ("::", 8001)),
        ("[::1]", ("::1", 8000)),
        ("::", ("::", 8000)),
    ],
)
def test_bind_address_reads_ipv4_ipv6_and_a_missing_port(value, address):
    assert bind_address(value) == address


def test_a_request_sees_its_own_variables_not_the_process_environment(monkeypatch):
    """granian copies the process's environment (DATABASE_URL, passwords) into each request's."""
    monkeypatch.setitem(_PROCESS_ENVIRONMENT, "DATABASE_URL", "postgres://u:secret@db/x")
    monkeypatch.setitem(_PROCESS_ENVIRONMENT, "HTTP_X_FORWARDED_FOR", "10.0.0.1")
    monkeypatch.setitem(_PROCESS_ENVIRONMENT, "HTTP_ACCEPT", "*/*")
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return [b""]

    environ = {
        "DATABASE_URL": "postgres://u:secret@db/x",
        "HTTP_X_FORWARDED_FOR": "10.0.0.1",  # from the process, not from the client
        "HTTP_ACCEPT": "text/html",  # the client's, under a name the process has too
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
    }
    without_process_environment(app)(environ, lambda *args: None)
    assert "DATABASE_URL" not in seen
    assert "HTTP_X_FORWARDED_FOR" not in seen
    assert seen["HTTP_ACCEPT"] == "text/html"
    assert seen["REQUEST_METHOD"] == "GET" and seen["PATH_INFO"] == "/"
