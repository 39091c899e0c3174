from django.urls import path

from feedback import project_pages, views

app_name = "feedback"
urlpatterns = [
    path("projects/new/", project_pages.project_create_page, name="project-create"),
    path(
        "projects/<int:project_id>/configure/",
        project_pages.project_configure_page,
        name="project-configure",
    ),
    path(
        "projects/guidelines/preview/",
        project_pages.guidelines_preview,
        name="guidelines-preview",
    ),
    path(
        "projects/<int:project_id>/members/",
        project_pages.member_add_view,
        name="project-member-add",
    ),
    path(
        "projects/<int:project_id>/members/<int:member_id>/role/",
        project_pages.member_role_view,
        name="project-member-role",
    ),
    path(
        "projects/<int:project_id>/members/<int:member_id>/remove/",
        project_pages.member_remove_view,
        name="project-member-remove",
    ),
    path(
        "projects/<int:project_id>/dashboard/",
        project_pages.project_dashboard_page,
        name="project-dashboard",
    ),
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
