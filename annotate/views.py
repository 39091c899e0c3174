"""Annotator pages: the project list and the task workspace, swapped in place by htmx.

One template (`annotate/task.html`) and one context serve both the full page and, for htmx
requests, its `task-card` partial. A submit or skip answers with the next card in place of
the form's (the claim task_next's POST makes, after the answer is committed), so the
annotator waits for one round trip, not two; a GET takes no task.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from annotate.forms import TaskForm, duration_from_post, feedback_from_post, submit_key_from_post
from feedback import queue
from feedback.dashboard import projects_overview
from feedback.models import Project, Task
from feedback.selectors import (
    annotator_place,
    annotator_task,
    held_task,
    project_for_annotator,
    project_progress,
    task_screen,
)
from feedback.services import FeedbackError


def annotator_page(view):
    """Log-in required, project resolved, annotators only.

    An htmx request without a session (it ended while the page was open) gets 401: sent to
    the login page, the request would follow the redirect and answer 200 with nothing to
    swap, and the annotator would think their answer was saved.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, project_id: int, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.htmx:
                return HttpResponse("Your session has ended: log in again.", status=401)
            return redirect_to_login(request.get_full_path())
        project = project_for_annotator(request.user, project_id)
        if project is None:
            raise Http404("No such project.")
        return view(request, project, **kwargs)

    return wrapper


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    """Every project of the user with its progress and the pages their role opens."""
    projects = projects_overview(request.user)
    return render(request, "annotate/project_list.html", {"projects": projects})


def _render_task(
    request: HttpRequest,
    project: Project,
    task: Task | None,
    *,
    fresh: bool = False,
    claim: bool = False,
    errors: FeedbackError | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render the task card (or the whole page); `fresh`: a lease not yet answered;
    `claim`: no task held, the card asks for one (a POST) as soon as it is shown."""
    # A fresh lease has no answer to go back from: the last answer is the previous one. The
    # task's responses come with the place.
    place = annotator_place(
        project=project, annotator=request.user, before=None if fresh else task, shown=task
    )
    screen = (
        task_screen(task=task, annotator=request.user, answered=not fresh)
        if task is not None
        else None
    )
    context = {
        "project": project,
        "screen": screen,
        "form": TaskForm.initial(screen) if screen is not None else None,
        "errors": errors,
        "place": place,
        "is_revisit": screen is not None and screen.current is not None,
        # One key per rendered card: a double-clicked or resent submit repeats it.
        "submit_key": uuid.uuid4(),
        "claim": claim,
    }
    if request.htmx:
        return render(request, "annotate/task.html#task-card", context, status=status)
    context["project_progress"] = project_progress(project=project)
    return render(request, "annotate/task.html", context, status=status)


@require_http_methods(["GET", "POST"])
@annotator_page
def task_next(request: HttpRequest, project: Project) -> HttpResponse:
    """POST: the annotator's current task (its lease renewed) or a new lease on the next one.
    GET: the task held, as it is, or a card that POSTs for one when shown.

    Taking and renewing leases write, so a GET does neither: another site can make the
    annotator's browser send one (a link, an image) but not a POST with the CSRF token.
    """
    if request.method == "POST":
        assignment = queue.task_claim_next(project=project, annotator=request.user)
        return _render_task(request, project, assignment.task if assignment else None, fresh=True)
    task = held_task(project=project, annotator=request.user)
    return _render_task(request, project, task, fresh=True, claim=task is None)


def _held_task(
    request: HttpRequest, project: Project, task_id: int, *, lapsed: bool = False
) -> Task:
    """A task of the project the annotator holds or has answered; 404 for any other.

    `lapsed`: a lease that ran out counts too (an answer to it may still be taken).
    """
    task = annotator_task(project=project, annotator=request.user, task_id=task_id, lapsed=lapsed)
    if task is None:
        raise Http404("No such task.")
    return task


@require_GET
@annotator_page
def task_detail(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    """A task the annotator did before, with their answer filled in, to change it."""
    return _render_task(request, project, _held_task(request, project, task_id))


def _done(request: HttpRequest, project: Project) -> HttpResponse:
    """After a submit or skip: the next card, swapped in for the card that was answered."""
    if not request.htmx:
        return redirect("annotate:task-next", project_id=project.pk)
    assignment = queue.task_claim_next(project=project, annotator=request.user)
    response = _render_task(request, project, assignment.task if assignment else None, fresh=True)
    return reswap(retarget(response, "#task-card"), "outerHTML")


@require_POST
@annotator_page
def task_submit(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    """Store the answer; after the lease lapsed, the queue takes it while the task needs it,
    else refuses it and the card shows why, with the form as the annotator left it."""
    task = _held_task(request, project, task_id, lapsed=True)
    try:
        # The form is read against the task, not against an earlier answer.
        screen = task_screen(task=task, annotator=request.user, answered=False)
        feedback = feedback_from_post(request.POST, screen)
        queue.task_submit(
            task=task,
            annotator=request.user,
            feedback=feedback,
            duration_ms=duration_from_post(request.POST),
            submit_key=submit_key_from_post(request.POST),
        )
    except FeedbackError as error:
        if not request.htmx:
            return _render_task(request, project, task, errors=error, status=422)
        # Only the error list is replaced, so nothing the annotator entered is lost.
        response = render(request, "annotate/task.html#task-errors", {"errors": error}, status=422)
        return reswap(retarget(response, "#task-errors"), "innerHTML")
    return _done(request, project)


@require_POST
@annotator_page
def task_skip(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = _held_task(request, project, task_id, lapsed=True)
    # A lease already gone (lapsed or submitted) leaves nothing to skip: move on as asked.
    with suppress(FeedbackError):
        queue.task_skip(task=task, annotator=request.user)
    return _done(request, project)


@require_GET
@annotator_page
def progress(request: HttpRequest, project: Project) -> HttpResponse:
    context = {"project": project, "project_progress": project_progress(project=project)}
    return render(request, "annotate/task.html#project-progress", context)
