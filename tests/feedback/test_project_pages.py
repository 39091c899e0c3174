"""Creating and configuring a project without the Django admin: who may, what a bad submit
says (the field at fault) and that it stores nothing; members by username; the guidelines
preview, sanitised."""

import pytest
from django.urls import reverse

from feedback import queue
from feedback.models import Project, ProjectMember, RatingAspect, SpanLabel, Task
from feedback.services import (
    FeedbackError,
    FeedbackInput,
    RatingInput,
    member_remove,
    member_set_role,
    submission_create,
)
from tests.factories import MemberFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db


def management(prefix: str, total: int, initial: int = 0) -> dict[str, int]:
    return {f"{prefix}-TOTAL_FORMS": total, f"{prefix}-INITIAL_FORMS": initial}


def new_project_form(**changes) -> dict:
    data = {
        "name": "Helpful İstanbul 🎉",
        "kinds": ["pairwise", "rating", "span"],
        "ranking_size": 4,
        "annotators_per_task": 2,
        "lease_minutes": 30,
        "guidelines": "# Judge\n\nPrefer **correct** answers.",
        **management("aspects", 1),
        "aspects-0-name": "Helpfulness",
        "aspects-0-rubric": "1 useless, 7 perfect",
        "aspects-0-scale_min": 1,
        "aspects-0-scale_max": 7,
        **management("labels", 1),
        "labels-0-name": "Factual error",
        "labels-0-color": "#ef4444",
        "labels-0-default_severity": "major",
    }
    return {**data, **changes}


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin(project):
    user = UserFactory(username="boss")
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ADMIN)
    return user


def configure_form(project: Project, **changes) -> dict:
    """The configure form as the page sends it, with `changes`."""
    aspects = list(project.aspects.all())
    labels = list(project.span_labels.all())
    data = {
        "name": project.name,
        "kinds": [kind.value for kind in project.feedback_kinds],
        "free_text_modes": ["critique", "rewrite", "rationale"],
        "ranking_size": project.ranking_size,
        "annotators_per_task": project.annotators_per_task,
        "lease_minutes": project.lease_minutes,
        "guidelines": project.guidelines,
        **management("aspects", len(aspects) + 1, len(aspects)),
        **management("labels", len(labels) + 1, len(labels)),
        # The blank rows, as a browser sends them: their initial values.
        f"aspects-{len(aspects)}-scale_min": 1,
        f"aspects-{len(aspects)}-scale_max": 5,
        f"labels-{len(labels)}-color": "#f59e0b",
        f"labels-{len(labels)}-default_severity": "minor",
    }
    for i, aspect in enumerate(aspects):
        data |= {
            f"aspects-{i}-id": aspect.pk,
            f"aspects-{i}-name": aspect.name,
            f"aspects-{i}-rubric": aspect.rubric,
            f"aspects-{i}-scale_min": aspect.scale_min,
            f"aspects-{i}-scale_max": aspect.scale_max,
        }
    for i, label in enumerate(labels):
        data |= {
            f"labels-{i}-id": label.pk,
            f"labels-{i}-name": label.name,
            f"labels-{i}-color": label.color,
            f"labels-{i}-default_severity": label.default_severity,
        }
    return {**data, **changes}


def test_a_superuser_creates_a_project_with_aspects_labels_and_guidelines(client, superuser):
    client.force_login(superuser)

    response = client.post(reverse("feedback:project-create"), new_project_form())

    project = Project.objects.get(name="Helpful İstanbul 🎉")
    assert response.status_code == 302
    assert response["Location"] == reverse("feedback:project-configure", args=[project.pk]) + (
        "#members"
    )
    assert [k.value for k in project.feedback_kinds] == ["pairwise", "rating", "span"]
    assert project.annotators_per_task == 2 and project.guidelines.startswith("# Judge")
    assert list(project.aspects.values_list("name", "scale_min", "scale_max")) == [
        ("Helpfulness", 1, 7)
    ]
    assert list(project.span_labels.values_list("name", "default_severity")) == [
        ("Factual error", "major")
    ]
    assert project.members.get().user == superuser  # its first admin


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"kinds": []}, "kinds", "Pick at least one kind of feedback"),
        ({"kinds": ["free_text"]}, "free_text_modes", "a critique, a rewrite or a rationale"),
        ({"ranking_size": 1}, "ranking_size", "greater than or equal to 2"),
        ({"aspects-0-scale_max": 1}, "aspects-0-scale_max", "above the minimum"),
        ({"labels-0-color": "red"}, "labels-0-color", "Colour must be #rrggbb"),
        ({"name": ""}, "name", "This field is required"),
    ],
)
def test_a_bad_create_names_the_field_keeps_what_was_typed_and_stores_nothing(
    client, superuser, changes, field, message
):
    client.force_login(superuser)

    response = client.post(reverse("feedback:project-create"), new_project_form(**changes))

    assert response.status_code == 422
    html = response.content.decode()
    assert "Nothing was saved" in html and message in html
    form = response.context["form"]
    errors = dict(form.errors)
    for formset in (response.context["aspects"], response.context["labels"]):
        for row in formset.forms:
            errors |= {f"{row.prefix}-{name}": e for name, e in row.errors.items()}
    assert field in errors, errors
    assert "Prefer **correct** answers." in html  # the guidelines typed are still there
    assert not Project.objects.exists()


def test_a_project_name_in_use_is_refused_on_the_name(client, superuser, project):
    client.force_login(superuser)
    response = client.post(reverse("feedback:project-create"), new_project_form(name=project.name))
    assert response.status_code == 422
    assert "name" in response.context["form"].errors
    assert Project.objects.count() == 1


def test_only_superusers_create_projects(client, project, admin):
    staff = UserFactory(username="staff", is_staff=True)
    for user in (admin, staff):
        client.force_login(user)
        assert client.get(reverse("feedback:project-create")).status_code == 403
        response = client.post(reverse("feedback:project-create"), new_project_form())
        assert response.status_code == 403
    assert Project.objects.count() == 1


@pytest.mark.parametrize(("role", "status"), [("annotator", 403), ("viewer", 403), (None, 404)])
def test_only_the_projects_admins_configure_it(client, project, role, status):
    user = UserFactory(username="someone")
    if role:
        MemberFactory(project=project, user=user, role=role)
    client.force_login(user)
    url = reverse("feedback:project-configure", args=[project.pk])
    assert client.get(url).status_code == status
    assert client.post(url, configure_form(project, name="Taken over")).status_code == status
    project.refresh_from_db()
    assert project.name != "Taken over"


def test_an_admin_changes_settings_renames_an_aspect_and_adds_a_label(client, project, admin):
    client.force_login(admin)
    helpfulness = project.aspects.get(name="Helpfulness")
    labels = project.span_labels.count()
    data = configure_form(project, annotators_per_task=3, guidelines="Be *kind*.")
    data |= {"aspects-0-name": "Usefulness", "labels-2-name": "Off-topic"}
    data |= {"labels-2-color": "#0ea5e9", "labels-2-default_severity": "minor"}

    response = client.post(reverse("feedback:project-configure", args=[project.pk]), data)

    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.annotators_per_task, project.guidelines) == (3, "Be *kind*.")
    helpfulness.refresh_from_db()
    assert helpfulness.name == "Usefulness"
    assert project.span_labels.count() == labels + 1


def test_an_aspect_in_use_is_neither_removed_nor_shrunk_past_its_ratings(client, project, admin):
    task = task_with_responses(project, Task.Layout.SINGLE, 1)
    honesty = project.aspects.get(name="Honesty")  # 1-7
    annotator = UserFactory(username="ann")
    MemberFactory(project=project, user=annotator, role=ProjectMember.Role.ANNOTATOR)
    response_id = task.links.get().response_id
    submission_create(
        task=task,
        annotator=annotator,
        feedback=FeedbackInput(ratings=[RatingInput(response_id, honesty.pk, 6)]),
    )
    client.force_login(admin)
    url = reverse("feedback:project-configure", args=[project.pk])

    shrunk = client.post(url, configure_form(project, **{"aspects-1-scale_max": 5}))
    removed = client.post(url, configure_form(project, **{"aspects-1-DELETE": "on"}))

    assert shrunk.status_code == 422
    assert "1 rating given on Honesty falls outside 1-5." in shrunk.content.decode()
    assert "aspects-1-scale_max" in shrunk.content.decode()
    assert removed.status_code == 422
    assert "1 rating uses Honesty: it cannot be removed" in removed.content.decode()
    honesty.refresh_from_db()
    assert (honesty.scale_max, RatingAspect.objects.filter(project=project).count()) == (7, 2)


def test_a_refused_configure_leaves_the_stored_project_as_it_was(client, project, admin):
    client.force_login(admin)
    before = (project.name, project.annotators_per_task)
    data = configure_form(project, name="Renamed", annotators_per_task=4)
    data |= {"aspects-0-name": "Honesty"}  # the other aspect's name

    response = client.post(reverse("feedback:project-configure", args=[project.pk]), data)

    assert response.status_code == 422
    rows = [row.errors for row in response.context["aspects"].forms]
    assert rows[0] == {"__all__": ["The project already has an aspect with this name."]}
    assert rows[1] == {"name": ["Row 1 has this name too."]}
    project.refresh_from_db()
    assert (project.name, project.annotators_per_task) == before
    assert sorted(project.aspects.values_list("name", flat=True)) == ["Helpfulness", "Honesty"]


def test_admins_add_members_by_username_change_roles_and_remove_them(client, project, admin):
    client.force_login(admin)
    UserFactory(username="zoë")
    add = reverse("feedback:project-member-add", args=[project.pk])

    unknown = client.post(add, {"username": "nobody", "role": "annotator"}, HTTP_HX_REQUEST="true")
    added = client.post(add, {"username": "zoë", "role": "annotator"}, HTTP_HX_REQUEST="true")
    again = client.post(add, {"username": "zoë", "role": "viewer"}, HTTP_HX_REQUEST="true")

    assert unknown.status_code == 422 and "No user is called &#x27;nobody&#x27;." in (
        unknown.content.decode()
    )
    assert 'name="username" value="nobody" maxlength="150" required aria-invalid="true"' in (
        unknown.content.decode()
    )
    assert added.status_code == 200 and "<bdi>zoë</bdi>" in added.content.decode()
    assert again.status_code == 422 and "already a member, as annotator" in again.content.decode()
    member = ProjectMember.objects.get(project=project, user__username="zoë")
    role_url = reverse("feedback:project-member-role", args=[project.pk, member.pk])
    assert client.post(role_url, {"role": "viewer"}, HTTP_HX_REQUEST="true").status_code == 200
    member.refresh_from_db()
    assert member.role == "viewer"
    remove_url = reverse("feedback:project-member-remove", args=[project.pk, member.pk])
    assert client.post(remove_url).status_code == 302  # without htmx: back to the page
    assert not ProjectMember.objects.filter(pk=member.pk).exists()


def test_the_last_admin_is_neither_demoted_nor_removed(client, project, admin):
    own = ProjectMember.objects.get(project=project, user=admin)
    client.force_login(admin)

    url = reverse("feedback:project-member-role", args=[project.pk, own.pk])
    response = client.post(url, {"role": "annotator"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 422 and "the only admin" in response.content.decode()
    with pytest.raises(FeedbackError, match="not removed"):
        member_remove(member=own)
    second = MemberFactory(project=project, user=UserFactory(username="co"), role="admin")
    member_set_role(member=own, role="viewer")  # another admin remains
    assert ProjectMember.objects.get(pk=second.pk).role == "admin"


def test_a_removed_annotator_gives_their_open_task_back(project, admin):
    task = task_with_responses(project, Task.Layout.PAIR, 2)
    annotator = UserFactory(username="leaver")
    member = MemberFactory(project=project, user=annotator, role="annotator")
    assert queue.task_claim_next(project=project, annotator=annotator).task == task
    task.refresh_from_db()
    assert task.slots_taken == 1

    member_remove(member=member)

    task.refresh_from_db()
    assert (task.slots_taken, task.is_full) == (0, False)


def test_annotators_get_no_member_or_preview_pages(client, project):
    annotator = UserFactory(username="ann2")
    member = MemberFactory(project=project, user=annotator, role="annotator")
    client.force_login(annotator)
    add = reverse("feedback:project-member-add", args=[project.pk])
    assert client.post(add, {"username": "ann2", "role": "admin"}).status_code == 403
    role_url = reverse("feedback:project-member-role", args=[project.pk, member.pk])
    assert client.post(role_url, {"role": "admin"}).status_code == 403
    preview = reverse("feedback:guidelines-preview")
    assert client.post(preview, {"guidelines": "x"}).status_code == 403
    member.refresh_from_db()
    assert member.role == "annotator"


def test_the_guidelines_preview_renders_markdown_and_drops_hostile_html(client, admin):
    client.force_login(admin)
    hostile = (
        "## Rules\n\n<script>alert(1)</script> <img src=x onerror=alert(2)>\n\n"
        "[click](javascript:alert(3)) and [docs](https://example.org)"
    )

    response = client.post(
        reverse("feedback:guidelines-preview"), {"guidelines": hostile}, HTTP_HX_REQUEST="true"
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "<h2>Rules</h2>" in html
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html  # shown as text, as annotators would see it
    assert 'href="https://example.org"' in html


def test_a_new_label_with_a_taken_name_is_refused_on_its_row(client, project, admin):
    client.force_login(admin)
    data = configure_form(project)
    data |= {"labels-2-name": "Unsafe", "labels-2-color": "#000000"}
    data |= {"labels-2-default_severity": "minor"}

    response = client.post(reverse("feedback:project-configure", args=[project.pk]), data)

    assert response.status_code == 422
    assert SpanLabel.objects.filter(project=project, name="Unsafe").count() == 1
