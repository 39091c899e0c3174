from django.urls import path

from annotate import views

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
]
