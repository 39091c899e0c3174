"""gunicorn settings, from the environment (unset or empty: the default).

gthread workers, one process a core with two threads each: measured on 2 cores with 8
annotators answering without a pause (benchmarks/annotate_load.py, 2026-12-02), 2 x 2 served
109 judgments/s, 3 x 2 95-99, 2 x 4 95 and 1 x 4 or 1 x 8 88-97 (one process holds one core
at most, Python's lock; PostgreSQL needs the rest). A thread waiting on the database leaves
the core to the other.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS") or os.cpu_count() or 1)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 2)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
keepalive = 30
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
