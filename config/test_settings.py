"""Test settings: the real PostgreSQL unless DATABASE_URL says otherwise.

The production settings with what a test needs: a secret key, and plain http for the test
client and the live server (no redirect to HTTPS, cookies sent over http, no manifest of
collected static files).
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/prefhub")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# In the environment, so that the worker processes some tests start can read it too.
os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-test-only-key")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests assert on what a job wrote once the call that started it returns: in-process jobs
# run in the caller (eager), not in a thread; the tests of the thread turn it on.
JOBS_IN_THREAD = False
# Rates no test reaches by accident; tests of the limits make them small.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"},
}
