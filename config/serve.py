"""The web server: granian serving config.wsgi, `python -m config.serve`.

Settings from the environment (unset or empty: the default): WEB_BIND `host:port`
(`127.0.0.1:8000`), WEB_WORKERS processes (one a core), WEB_THREADS threads each running the
WSGI app (2), WEB_ACCESS_LOG (yes/no, as config.env.env_flag reads it: one line a request
on stdout), LOG_LEVEL (granian's own lines; Django's settings read it too).

granian rather than gunicorn: measured on 2 cores with 16 annotators answering without a pause
over 100,000 tasks (benchmarks/annotate_load.py, 2026-12-02), granian served ~405 judgments/s
for 2.7-2.8 ms of web-process CPU a judgment and p95 52-55 ms, gunicorn gthread 270.5-373.1
judgments/s, 3.0-3.9 ms and p95 62-105 ms; beside Label Studio with a new connection per
request, 347 judgments/s against gunicorn's 305. granian ends a chunked response without its
last chunk when the app fails mid-stream, so a broken export reaches the client as an error
(tests/feedback/api/test_export_stream_failure.py), and streams request bodies to the app, so
an upload is not held whole in memory.

One process a core, since one process holds one core at most (Python's lock); two threads
each, so a thread waiting on the database leaves the core to the other. The sweep behind
these defaults ran under gunicorn (README, benchmarks). WSGI has no request timeout here: a
hung request holds its thread until it returns.
"""

import os

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from config.env import env_flag

APPLICATION = "config.wsgi:application"


def bind_address(value: str) -> tuple[str, int]:
    """(host, port) from WEB_BIND: `0.0.0.0:8000`, `[::]:8000` or a host alone (port 8000).
    granian takes an IP address, not a name such as localhost."""
    host, colon, port = value.rpartition(":")
    if not colon or "]" in port or (host.count(":") and not host.startswith("[")):
        host, port = value, "8000"  # no port, or a bare IPv6 address
    return host.strip("[]"), int(port)


def serve(target: str = APPLICATION) -> None:
    """Serve the WSGI callable `target` ("module:name") until SIGINT or SIGTERM.

    Workers are processes forked by this one; a worker that dies is started again.
    """
    host, port = bind_address(os.environ.get("WEB_BIND") or "127.0.0.1:8000")
    level = (os.environ.get("LOG_LEVEL") or "INFO").lower()
    Granian(
        target=target,
        interface=Interfaces.WSGI,
        address=host,
        port=port,
        workers=int(os.environ.get("WEB_WORKERS") or os.cpu_count() or 1),
        blocking_threads=int(os.environ.get("WEB_THREADS") or 2),
        # granian's longest: a thread that ends takes its persistent database connection
        # with it, and the next request after a lull would open another.
        blocking_threads_idle_timeout=600,
        websockets=False,
        respawn_failed_workers=True,
        # On SIGTERM, requests in flight (a long export) get this long before the kill.
        workers_kill_timeout=30,
        log_level=LogLevels("critical" if level == "fatal" else level),  # Python's alias
        log_access=env_flag("WEB_ACCESS_LOG", False),
    ).serve()


if __name__ == "__main__":
    serve()
