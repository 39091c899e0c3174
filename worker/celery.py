"""The Celery app. Settings come from Django's, prefixed CELERY_."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before torch loads OpenMP (every process that runs jobs imports this first: manage.py and
# granian through config, Celery through -A worker). OpenMP threads spin-wait between
# parallel regions by default; when other processes hold the cores (a shared server, a
# laptop's browser), a spinning thread takes the CPU from the one doing the work, and a
# SmolLM2 decode step on 2 busy cores took 2.5 s instead of 0.3 s. Passive threads sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = Celery("prefhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["worker"])
