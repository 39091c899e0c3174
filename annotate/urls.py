from django.urls import path

from annotate import jobs, rewards, views

app_name = "annotate"
reward_model = "projects/<int:project_id>/reward-models/<int:reward_model_id>/"
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
    path("jobs/<int:job_id>/retry/", jobs.job_restart, name="job-retry"),
    path(
        "projects/<int:project_id>/judges/quality/",
        jobs.judge_quality_page,
        name="judge-quality",
    ),
    path("projects/<int:project_id>/reward-models/", rewards.reward_models, name="reward-models"),
    path(
        "projects/<int:project_id>/reward-models/train/",
        rewards.reward_model_train,
        name="reward-model-train",
    ),
    path(f"{reward_model}", rewards.reward_model_page, name="reward-model"),
    path(f"{reward_model}activate/", rewards.reward_model_activation, name="reward-model-activate"),
    path(f"{reward_model}delete/", rewards.reward_model_removal, name="reward-model-delete"),
    path(f"{reward_model}score/", rewards.reward_model_score, name="reward-model-score"),
    path(f"{reward_model}evaluate/", rewards.reward_model_evaluate, name="reward-model-evaluate"),
    path("projects/<int:project_id>/best-of-n/", rewards.best_of_n, name="best-of-n"),
]
