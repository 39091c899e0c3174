"""The Django admin follows project roles: staff configure only projects they administer.

Django's model permissions say what kind of row a staff user may change; project roles say
which rows. A staff user with every feedback permission still sees, changes and adds
members to only the projects where they are a project admin; superusers see all.
"""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from feedback.models import Project, ProjectMember, Prompt, Task
from tests.factories import MemberFactory, ProjectFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    """Staff with every permission on the feedback app and on users, a member of nothing yet."""
    user = UserFactory(username="staffer", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["feedback", "auth"])
    )
    return user


@pytest.fixture
def projects(staff):
    """Projects where the staff user is admin, viewer, annotator, and nothing."""
    roles = {"mine": "admin", "viewed": "viewer", "annotated": "annotator", "other": None}
    made = {}
    for key, role in roles.items():
        made[key] = ProjectFactory(name=f"İstanbul {key} 🚀")
        if role:
            MemberFactory(project=made[key], user=staff, role=role)
    return made


def form_data(page) -> dict:
    """The POST body the change page would send unchanged: main form and every inline."""
    data = {}
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        forms.extend(formset.forms)
        management = formset.management_form
        for name, field in management.fields.items():
            data[management.add_prefix(name)] = management.initial.get(name, field.initial)
    for form in forms:
        for name, field in form.fields.items():
            value = form.initial.get(name, field.initial)
            if hasattr(value, "pk"):
                value = value.pk
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = value
    return data


def with_member(data: dict, user, role: str) -> dict:
    index = data["members-TOTAL_FORMS"]
    return {
        **data,
        "members-TOTAL_FORMS": index + 1,
        f"members-{index}-user": user.pk,
        f"members-{index}-role": role,
    }


def test_staff_list_only_the_projects_they_administer(client, staff, projects):
    client.force_login(staff)
    page = client.get(reverse("admin:feedback_project_changelist"))
    assert list(page.context["cl"].result_list) == [projects["mine"]]


@pytest.mark.parametrize("key", ["viewed", "annotated", "other"])
def test_staff_cannot_open_or_change_a_project_they_do_not_administer(client, staff, projects, key):
    client.force_login(staff)
    project = projects[key]
    url = reverse("admin:feedback_project_change", args=[project.pk])
    assert client.get(url).status_code == 302  # "doesn't exist", back to the index
    client.post(url, {"name": "<script>alert(1)</script>", "annotators_per_task": 9})
    project.refresh_from_db()
    assert project.name.startswith("İstanbul") and project.annotators_per_task != 9
    import_url = reverse("admin:feedback_project_import", args=[project.pk])
    assert client.get(import_url).status_code in {302, 404}


def test_staff_cannot_grant_themselves_membership_of_another_project(
    client, django_user_model, staff, projects
):
    """The body a superuser's page would send, plus a member row naming the staff user."""
    other = projects["other"]
    url = reverse("admin:feedback_project_change", args=[other.pk])
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    data = with_member(form_data(client.get(url)), staff, "admin")
    client.force_login(staff)
    client.post(url, data)
    assert not ProjectMember.objects.filter(project=other, user=staff).exists()
    # The same body from a superuser is valid: it is the role that refuses it above.
    client.force_login(django_user_model.objects.get(username="root"))
    assert client.post(url, data).status_code == 302
    assert ProjectMember.objects.filter(project=other, user=staff).exists()


def test_a_project_admin_adds_a_member_to_their_own_project(client, staff, projects):
    client.force_login(staff)
    mine = projects["mine"]
    url = reverse("admin:feedback_project_change", args=[mine.pk])
    newcomer = UserFactory(username="newcomer")
    response = client.post(url, with_member(form_data(client.get(url)), newcomer, "annotator"))
    assert response.status_code == 302, response.context["errors"]
    assert ProjectMember.objects.get(project=mine, user=newcomer).role == "annotator"


def test_a_project_staff_create_in_the_admin_has_them_as_its_admin(client, staff):
    client.force_login(staff)
    response = client.post(
        reverse("admin:feedback_project_add"),
        {
            "name": "New <b>project</b>",
            "collects_pairwise": "on",
            "annotators_per_task": 1,
            "lease_minutes": 30,
            "ranking_size": 3,
            "members-TOTAL_FORMS": 0,
            "members-INITIAL_FORMS": 0,
            "aspects-TOTAL_FORMS": 0,
            "aspects-INITIAL_FORMS": 0,
            "span_labels-TOTAL_FORMS": 0,
            "span_labels-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.context["errors"]
    project = Project.objects.get(name="New <b>project</b>")
    assert ProjectMember.objects.get(project=project, user=staff).role == "admin"
    changelist = client.get(reverse("admin:feedback_project_changelist"))
    assert project in changelist.context["cl"].result_list


def test_rows_of_other_projects_are_hidden_from_staff(client, staff, projects):
    mine = task_with_responses(projects["mine"], "pair", 2)
    task_with_responses(projects["other"], "pair", 2)
    client.force_login(staff)
    tasks = client.get(reverse("admin:feedback_task_changelist")).context["cl"].result_list
    assert list(tasks) == [mine]
    page = client.get(reverse("admin:feedback_prompt_changelist"))
    assert list(page.context["cl"].result_list) == [mine.prompt]
    assert projects["other"].name not in page.content.decode()  # nor in the filter
    other = Task.objects.exclude(pk=mine.pk).get()
    assert client.get(reverse("admin:feedback_task_change", args=[other.pk])).status_code == 302
    assert Prompt.objects.count() == 2


def test_superusers_see_every_project(client, projects):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:feedback_project_changelist"))
    assert set(page.context["cl"].result_list) == set(projects.values())


def test_raising_annotators_per_task_in_the_admin_reopens_full_tasks(client, staff, projects):
    mine = projects["mine"]
    task = task_with_responses(mine, "pair", 2)
    Task.objects.filter(pk=task.pk).update(slots_taken=1, is_full=True)
    client.force_login(staff)
    url = reverse("admin:feedback_project_change", args=[mine.pk])
    response = client.post(url, {**form_data(client.get(url)), "annotators_per_task": 3})
    assert response.status_code == 302, response.context["errors"]
    assert Task.objects.get(pk=task.pk).is_full is False
