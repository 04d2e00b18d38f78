from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.urls import include, path
from django.views.i18n import set_language

from archive import views as archive_views
from webadmin import views
from webadmin.auth import oidc as oidc_views
from webadmin.auth import views as sign_in

urlpatterns = [
    path("", lambda request: redirect("archive:table")),
    path("login/", sign_in.SignInView.as_view(), name="login"),
    path("login/code/", sign_in.login_code, name="login_code"),
    path("account/two-factor/", sign_in.two_factor, name="account_two_factor"),
    # OpenID Connect (webadmin/auth/oidc.py): 404 unless OIDC_CLIENT_ID is configured.
    path("oidc/authenticate/", oidc_views.AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc_views.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The top bar's language menu (POST; the choice is kept in the language cookie).
    path("i18n/setlang/", set_language, name="set_language"),
    path("dms/", include("archive.urls")),
    path("webadmin/", include("webadmin.admin_urls")),
    path("webadmin/sources/", include("mailsources.urls")),
    path("webadmin/exports/", include("archive.exports.urls")),
    path("webadmin/reconcile/", include("mailsources.reconcile_urls")),
    path("webadmin/retention/", include("archive.retention.urls")),
    path("webadmin/audit/", include("archive.integrity.audit_urls")),
    path("webadmin/integrity/", include("archive.integrity.urls")),
    path("webadmin/manage/", admin.site.urls),
    # The original box's access links: they must keep working forever.
    path("perl/avclient/index.pl", archive_views.legacy_link, name="legacy_link"),
    path("healthz", views.healthz, name="healthz"),
    path("api/", include("api.urls")),
    path("account/tokens/", include("api.account_urls")),
]

# An outage outside a view (e.g. the session saved by its middleware) is a 503 too.
handler500 = "webadmin.middleware.server_error"
