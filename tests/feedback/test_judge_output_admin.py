"""Admins read what judges said, newest first, with model output escaped and nothing editable."""

import pytest
from django.urls import reverse

from feedback.models import Job, JudgeOutput
from tests.factories import JudgeFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db


@pytest.fixture
def outputs(project):
    judge = JudgeFactory()
    job = Job.objects.create(project=project, kind=Job.Kind.JUDGE)
    task = task_with_responses(project, "pair", 2)
    stored = JudgeOutput.objects.create(
        job=job, task=task, judge=judge, kind="pairwise", raw_output="Verdict: A", parsed={}
    )
    failed = JudgeOutput.objects.create(
        job=job,
        task=task,
        judge=judge,
        kind="pairwise",
        swapped=True,
        raw_output="<script>alert(1)</script> no verdict",
        parse_error="no verdict found",
    )
    return stored, failed


def test_the_failed_filter_lists_outputs_that_did_not_parse(client, outputs):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:feedback_judgeoutput_changelist"), {"parsed": "no"})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [outputs[1]]
    assert "no verdict found" in page.content.decode()


def test_an_output_shows_read_only_and_escaped(client, outputs):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:feedback_judgeoutput_change", args=[outputs[1].pk])
    html = client.get(url).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert client.post(url, {"raw_output": "changed"}).status_code == 403
    delete = reverse("admin:feedback_judgeoutput_delete", args=[outputs[1].pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert JudgeOutput.objects.count() == 2
