"""Reading settings from the environment, for Django's settings and the web server's."""

import os


def env_flag(name: str, default: bool) -> bool:
    """A yes/no variable; unset or empty (as compose passes an unset `${VAR}`) is `default`."""
    value = os.environ.get(name, "").strip().lower()
    return value in {"1", "true", "yes", "on"} if value else default
