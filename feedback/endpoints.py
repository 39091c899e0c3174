"""Where jobs may get text from: the operator's inference endpoints and model directories.

Project admins start jobs and staff edit judges, but neither chooses where the worker sends
its API keys or which files it reads. A served model names an endpoint of the operator's
registry (`settings.INFERENCE_ENDPOINTS`: name -> base URL and the environment variable
holding its key); a local model is a hub name or a path under one of
`settings.LOCAL_MODEL_DIRS`. Both are checked when a job starts and again in the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# An environment variable name; the registry may name no other kind of thing.
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# A hub repository id, "model" or "org/model", as huggingface_hub accepts them.
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class InferenceEndpoint:
    """An OpenAI-compatible server; its key is read from `api_key_env` in the worker."""

    name: str
    base_url: str
    api_key_env: str = ""


def inference_endpoints() -> dict[str, InferenceEndpoint]:
    """The registry, checked: every entry has an http(s) base_url and a valid variable name."""
    endpoints: dict[str, InferenceEndpoint] = {}
    for name, entry in settings.INFERENCE_ENDPOINTS.items():
        if not isinstance(entry, dict) or set(entry) - {"base_url", "api_key_env"}:
            raise ImproperlyConfigured(
                f"INFERENCE_ENDPOINTS[{name!r}] must be an object with base_url and api_key_env."
            )
        url = str(entry.get("base_url", ""))
        key_env = str(entry.get("api_key_env", ""))
        if urlsplit(url).scheme not in {"http", "https"} or not urlsplit(url).netloc:
            raise ImproperlyConfigured(f"INFERENCE_ENDPOINTS[{name!r}]: base_url must be http(s).")
        if key_env and not _ENV_NAME.fullmatch(key_env):
            raise ImproperlyConfigured(
                f"INFERENCE_ENDPOINTS[{name!r}]: api_key_env must be a variable name."
            )
        endpoints[str(name)] = InferenceEndpoint(str(name), url, key_env)
    return endpoints


def endpoint_refusal(name: str) -> str | None:
    """Why `name` is not an endpoint jobs may use, or None."""
    known = inference_endpoints()
    if name in known:
        return None
    allowed = ", ".join(sorted(known)) or "none; the operator sets INFERENCE_ENDPOINTS"
    return f"Unknown inference endpoint {name!r}. Allowed: {allowed}."


def endpoint_get(name: str) -> InferenceEndpoint:
    """The registered endpoint; ValueError (with the allowed names) for any other."""
    if refusal := endpoint_refusal(name):
        raise ValueError(refusal)
    return inference_endpoints()[name]


def local_model_dirs() -> list[Path]:
    return [Path(d).expanduser().resolve() for d in settings.LOCAL_MODEL_DIRS if str(d)]


def local_model_refusal(location: str) -> str | None:
    """Why the worker may not load `location`, or None.

    A hub name ("org/model", read from the hub cache or the hub) is allowed unless a file
    of that name exists here; any path must lie, once `..` and symbolic links are
    resolved, under an allowed directory.
    """
    path = Path(location).expanduser()
    hub_name = (
        _HUB_NAME.fullmatch(location) is not None
        and ".." not in location
        and not location.endswith(".gguf")
    )
    if hub_name and not path.exists():
        return None
    resolved = path.resolve()
    dirs = local_model_dirs()
    if any(resolved.is_relative_to(directory) for directory in dirs):
        return None
    allowed = ", ".join(str(d) for d in dirs) or "none; the operator sets LOCAL_MODEL_DIRS"
    return f"{location!r} is not in an allowed model directory ({allowed})."
