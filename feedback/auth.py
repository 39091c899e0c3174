"""The signed-in user, read from the cache: every request of a session looks it up.

Django's ModelBackend reads the user row on each request; the annotator's workspace makes
two requests a judgment, and that read was one of its larger costs. A saved or deleted user
drops its entry (`user_changed`), so a new password or a deactivation ends the old sessions
at once where the cache is shared (Redis, CACHE_URL) and within USER_CACHE_SECONDS where
each process keeps its own.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache

USER_CACHE_SECONDS = 30


def user_key(user_id: object) -> str:
    return f"prefhub:user:{user_id}"


class CachedModelBackend(ModelBackend):
    """ModelBackend whose `get_user` (the per-request look-up) goes through the cache.

    Logging in still checks the password against the database (`authenticate`), and the
    session's hash of the password is checked against the cached user as before.
    """

    def get_user(self, user_id: object) -> AbstractBaseUser | None:
        key = user_key(user_id)
        user = cache.get(key)
        if user is None:
            user = super().get_user(user_id)
            if user is not None:
                cache.set(key, user, USER_CACHE_SECONDS)
        return user


def user_changed(sender, instance: AbstractBaseUser, **kwargs) -> None:
    cache.delete(user_key(instance.pk))
