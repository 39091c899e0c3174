from django.urls import path

from annotate import views

app_name = "annotate"
urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/<int:project_id>/", views.project_detail, name="project-detail"),
]
