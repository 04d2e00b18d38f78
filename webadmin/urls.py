from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.urls import include, path

from archive import views as archive_views
from webadmin import views

urlpatterns = [
    path("", lambda request: redirect("archive:table")),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dms/", include("archive.urls")),
    path("webadmin/", include("webadmin.admin_urls")),
    path("webadmin/sources/", include("mailsources.urls")),
    path("webadmin/integrity/", include("archive.integrity.urls")),
    path("webadmin/manage/", admin.site.urls),
    # The original box's access links: they must keep working forever.
    path("perl/avclient/index.pl", archive_views.legacy_link, name="legacy_link"),
    path("healthz", views.healthz, name="healthz"),
    path("api/", include("api.urls")),
    path("account/tokens/", include("api.account_urls")),
]
