"""The Celery app. Settings come from Django's, prefixed CELERY_."""

import os

from celery import Celery

from config.runtime import tune_garbage_collector

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
tune_garbage_collector()

app = Celery("prefhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["worker"])
