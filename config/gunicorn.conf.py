"""gunicorn settings, from the environment; defaults suit a small (2-core) machine.

gthread workers: requests spend part of their time waiting on PostgreSQL, so a few threads
per process keep the cores busy without the memory of many processes.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str((os.cpu_count() or 1) + 1)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
keepalive = 30
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
