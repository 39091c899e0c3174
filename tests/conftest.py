import os
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache

from feedback.models import ProjectMember
from tests.factories import (
    AspectFactory,
    MemberFactory,
    ProjectFactory,
    SpanLabelFactory,
    UserFactory,
)

# Before torch is imported (neither the test settings nor the imports above import it).
# The models in tests are tiny: a second thread costs more in synchronisation than it
# saves, and on two cores the xdist workers (bin/test) and the processes that tests start
# share the CPUs.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _broker_per_xdist_worker() -> None:
    """pytest-xdist gives each worker (gw0, gw1, ...) its own test database, but the
    Celery tests of all workers would share TEST_CELERY_BROKER_URL's Redis database, which
    their broker fixture empties: worker gwN takes the database N above it. Runs before
    the test modules read the variable."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    # The default is tests/worker's.
    url = urlsplit(os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7"))
    db = int(url.path.strip("/") or 0) + int(worker.removeprefix("gw"))
    os.environ["TEST_CELERY_BROKER_URL"] = url._replace(path=f"/{db}").geturl()


_broker_per_xdist_worker()


@pytest.hookimpl(trylast=True)  # after pytest's own reordering and any -m/-k deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the tests marked slow go first (in their order), the many quick
    ones after: workers pick tests as they free up, so no long test is left to run alone
    at the end while the other worker idles."""
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with an empty cache, as it starts with an empty database."""
    cache.clear()


@pytest.fixture
def project(db):
    """A project collecting all five kinds, with two aspects and two span labels."""
    project = ProjectFactory()
    AspectFactory(project=project, name="Helpfulness")
    AspectFactory(project=project, name="Honesty", scale_min=1, scale_max=7)
    SpanLabelFactory(project=project, name="Factual error")
    SpanLabelFactory(project=project, name="Unsafe")
    return project


@pytest.fixture
def annotator(project):
    user = UserFactory(username="ann")
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
    return user


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")
