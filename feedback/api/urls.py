from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from feedback.api import views

app_name = "api"
project = "projects/<int:project_id>/"
reward_model = f"{project}reward-models/<int:reward_model_id>/"
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Split: the page's setup script is a file of its own; its one <style> element needs
    # inline styles, allowed on this page only.
    path(
        "docs/",
        csp_replace({"style-src": [SELF, UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api:schema")
        ),
        name="docs",
    ),
    path("projects/", views.ProjectListApi.as_view(), name="project-list"),
    path(project, views.ProjectDetailApi.as_view(), name="project-detail"),
    path(f"{project}prompts/", views.PromptListApi.as_view(), name="prompt-list"),
    path(
        f"{project}prompts/<int:prompt_id>/", views.PromptDetailApi.as_view(), name="prompt-detail"
    ),
    path(f"{project}responses/", views.ResponseListApi.as_view(), name="response-list"),
    path(
        f"{project}responses/<int:response_id>/",
        views.ResponseDetailApi.as_view(),
        name="response-detail",
    ),
    path(f"{project}tasks/", views.TaskListApi.as_view(), name="task-list"),
    path(f"{project}tasks/<int:task_id>/", views.TaskDetailApi.as_view(), name="task-detail"),
    path(f"{project}feedback/", views.FeedbackListApi.as_view(), name="feedback-list"),
    path(
        f"{project}feedback/<int:submission_id>/",
        views.FeedbackDetailApi.as_view(),
        name="feedback-detail",
    ),
    path(f"{project}export/", views.ProjectExportApi.as_view(), name="project-export"),
    path(f"{project}agreement/", views.ProjectAgreementApi.as_view(), name="project-agreement"),
    path(
        f"{project}consistency/", views.ProjectConsistencyApi.as_view(), name="project-consistency"
    ),
    path(f"{project}dashboard/", views.ProjectDashboardApi.as_view(), name="project-dashboard"),
    path(f"{project}judges/quality/", views.JudgeQualityApi.as_view(), name="judge-quality"),
    path(f"{project}leaderboard/", views.LeaderboardApi.as_view(), name="leaderboard"),
    path(f"{project}jobs/<int:job_id>/", views.JobDetailApi.as_view(), name="job-detail"),
    path(f"{project}reward-models/", views.RewardModelListApi.as_view(), name="reward-model-list"),
    path(f"{reward_model}", views.RewardModelDetailApi.as_view(), name="reward-model-detail"),
    path(
        f"{reward_model}activate/",
        views.RewardModelActivateApi.as_view(),
        name="reward-model-activate",
    ),
    path(f"{reward_model}score/", views.RewardModelScoreApi.as_view(), name="reward-model-score"),
    path(f"{project}loop/", views.LoopConfigApi.as_view(), name="loop-config"),
    path(f"{project}rounds/", views.RoundListApi.as_view(), name="round-list"),
    path(f"{project}rounds/<int:number>/", views.RoundDetailApi.as_view(), name="round-detail"),
    path(
        f"{reward_model}evaluate/",
        views.RewardModelEvaluateApi.as_view(),
        name="reward-model-evaluate",
    ),
]
