from django.urls import path

from webadmin import views

app_name = "webadmin"

urlpatterns = [
    path("", views.home, name="home"),
    path("archive/", views.archive_settings, name="archive_settings"),
    path("dashboard/reindex/", views.dashboard_reindex, name="dashboard_reindex"),
]
