"""Rate limits: the API per user, the login forms per username and address. The limits
come from settings; here they are made small."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_api_rates(monkeypatch):
    # DRF reads its rates into the class when it is imported: settings overrides come late.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min", "user": "3/min"})


def test_a_user_past_the_api_rate_gets_429(small_api_rates):
    client = APIClient()
    user = UserFactory(username="busy-İstanbul")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    url = reverse("api:project-list")
    assert [client.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]
    other = APIClient()
    other.force_authenticate(UserFactory(username="calm"))
    assert other.get(url).status_code == 200, "the limit is per user"


@pytest.fixture
def login_limit(settings):
    settings.AXES_FAILURE_LIMIT = 3


def log_in(client, username: str, password: str) -> int:
    data = {"username": username, "password": password}
    return client.post(reverse("login"), data).status_code


def test_the_login_form_locks_a_username_after_failed_attempts(client, login_limit):
    UserFactory(username="ann")
    assert [log_in(client, "ann", "wrong") for _ in range(3)] == [200, 200, 429]
    assert log_in(client, "ann", "pw") == 429, "locked even with the right password"
    assert log_in(client, "someone-else", "wrong") == 200


def test_a_successful_login_resets_the_count(client, login_limit):
    UserFactory(username="ann")
    assert [log_in(client, "ann", "wrong") for _ in range(2)] == [200, 200]
    assert log_in(client, "ann", "pw") == 302
    client.logout()
    assert [log_in(client, "ann", "wrong") for _ in range(2)] == [200, 200]


def test_the_admin_login_shares_the_lock(client, login_limit):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(3):
        log_in(client, "root", "wrong")
    data = {"username": "root", "password": "pw", "next": "/admin/"}
    assert client.post(reverse("admin:login"), data).status_code == 429
