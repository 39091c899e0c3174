"""A small HTTP/1.1 client for the simulated annotators, over the standard library's
http.client.

The annotators run on the same cores as the servers they measure, so their own CPU is taken
from the server. httpx spent ~0.41 ms of CPU a request here, http.client 0.07-0.09 ms (1,000
form POSTs with a 12 KB reply, keep-alive or a new connection each); both apps get this same
client, so the side-by-side ratio measures the servers rather than the client.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


class LeanClient:
    """Requests to one server with fixed headers (cookies, token); `keepalive=False` opens a
    new connection for each request and asks the server to close it, as a browser's requests
    through a proxy that closes them arrive."""

    def __init__(
        self, base: str, *, keepalive: bool, headers: dict[str, str], timeout: float = 120
    ) -> None:
        address = urlsplit(base)
        self.host, self.port = address.hostname, address.port
        self.keepalive = keepalive
        self.headers = headers if keepalive else {**headers, "Connection": "close"}
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Reply:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {**self.headers, "Content-Type": content_type} if content_type else self.headers
        try:
            self.connection.request(method, path, body, headers)
            response = self.connection.getresponse()
            reply = Reply(response.status, response.read())
        except (OSError, http.client.HTTPException):
            self.close()  # the next request opens a new connection
            raise
        if not self.keepalive or response.will_close:
            self.close()
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str] | None = None) -> Reply:
        return self.request("POST", path, urlencode(data or {}).encode(), FORM)

    def post_json(self, path: str, payload: Any) -> Reply:
        return self.request("POST", path, json.dumps(payload).encode(), "application/json")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
