from django.urls import path

from annotate import jobs, views

app_name = "annotate"
urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/<int:project_id>/", views.task_next, name="task-next"),
    path("projects/<int:project_id>/progress/", views.progress, name="progress"),
    path("projects/<int:project_id>/tasks/<int:task_id>/", views.task_detail, name="task-detail"),
    path(
        "projects/<int:project_id>/tasks/<int:task_id>/submit/",
        views.task_submit,
        name="task-submit",
    ),
    path("projects/<int:project_id>/tasks/<int:task_id>/skip/", views.task_skip, name="task-skip"),
    path("projects/<int:project_id>/jobs/", jobs.project_jobs, name="project-jobs"),
    path("projects/<int:project_id>/jobs/generate/", jobs.job_generate, name="job-generate"),
    path("projects/<int:project_id>/jobs/judge/", jobs.job_judge, name="job-judge"),
    path("jobs/<int:job_id>/progress/", jobs.job_progress, name="job-progress"),
    path("jobs/<int:job_id>/cancel/", jobs.job_stop, name="job-cancel"),
    path("jobs/<int:job_id>/requeue/", jobs.job_resume, name="job-requeue"),
    path(
        "projects/<int:project_id>/judges/quality/",
        jobs.judge_quality_page,
        name="judge-quality",
    ),
]
