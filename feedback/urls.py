from django.urls import path

from feedback import views

app_name = "feedback"
urlpatterns = [
    path(
        "projects/<int:project_id>/agreement/",
        views.project_agreement_page,
        name="project-agreement",
    ),
    path(
        "projects/<int:project_id>/leaderboard/",
        views.project_leaderboard_page,
        name="project-leaderboard",
    ),
]
