from django.urls import path

from webadmin import users, views

app_name = "webadmin"

urlpatterns = [
    path("", views.home, name="home"),
    path("archive/", views.archive_settings, name="archive_settings"),
    path("dashboard/reindex/", views.dashboard_reindex, name="dashboard_reindex"),
    path("users/", users.user_list, name="users"),
    path("users/new/", users.user_create, name="user_create"),
    path("users/<int:pk>/", users.user_edit, name="user_edit"),
    path("users/<int:pk>/password/", users.user_password, name="user_password"),
    path("users/<int:pk>/active/", users.user_active, name="user_active"),
    path("groups/", users.group_list, name="groups"),
    path("groups/new/", users.group_edit, name="group_create"),
    path("groups/<int:pk>/", users.group_edit, name="group_edit"),
]
