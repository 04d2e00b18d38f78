from django.urls import include, path

from webadmin import views

app_name = "webadmin"

urlpatterns = [
    path("", views.home, name="home"),
    path("archive/", views.archive_settings, name="archive_settings"),
    path("sources/", include("mailsources.urls")),
]
