"""The sign-in pages: the password step (Django's LoginView, with a second step
for accounts that have an authenticator), the code step, and enrolling an
authenticator — during sign-in for administrators who must have one, or from
the account page. Every step keeps ``next`` (checked to stay on this site)."""

from __future__ import annotations

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, user_login_failed
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext_lazy as _

from webadmin.auth import totp
from webadmin.login_throttle import lockout_response

DIRECTORY_MESSAGES = {
    "failed": _("Signing in through the directory did not work. Try again, or ask an administrator."),
    "unreachable": _(
        "The sign-in service cannot be reached just now. Try again later, or log in with a local account."
    ),
}


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
    )


def safe_next(request: HttpRequest, candidate: str | None = None) -> str:
    """``next`` if it stays on this site, else the archive's start page."""
    value = candidate if candidate is not None else request.POST.get("next") or request.GET.get("next", "")
    if value and url_has_allowed_host_and_scheme(value, {request.get_host()}, require_https=request.is_secure()):
        return value
    return str(resolve_url(settings.LOGIN_REDIRECT_URL))


def with_next(url_name: str, next_url: str) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': next_url})}"


class SignInView(auth_views.LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["directory_message"] = DIRECTORY_MESSAGES.get(self.request.GET.get("directory", ""))
        return context

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        backend = str(getattr(user, "backend", totp.LOCAL_BACKEND))
        if not totp.needs_second_step(user, backend):
            return super().form_valid(form)
        step = totp.start_pending(self.request, user, backend)
        target = "account_two_factor" if step.must_enrol else "login_code"
        return HttpResponseRedirect(with_next(target, safe_next(self.request)))


def finish_sign_in(request: HttpRequest, step: totp.Pending) -> None:
    totp.clear_pending(request)
    # On the user, not only as login()'s argument: the sign-in's listeners (the audit log's
    # "backend") read it from there, as after a one-step sign-in.
    step.user.backend = step.backend  # type: ignore[attr-defined]  # as django.contrib.auth.authenticate() sets it
    login(request, step.user)


def count_failure(request: HttpRequest, user: User) -> None:
    """A wrong code counts like a wrong password (axes, and whoever else listens)."""
    user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)


def locked_out(request: HttpRequest, user: User) -> bool:
    return not AxesProxyHandler.is_allowed(request, credentials={"username": user.get_username()})


def login_code(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the authenticator app, or a recovery code."""
    step = totp.pending(request)
    if step is None or step.must_enrol:
        return redirect(with_next("login", safe_next(request)))
    form = CodeForm(request.POST if request.method == "POST" else None)  # an empty POST is bound too
    if request.method == "POST":
        if locked_out(request, step.user):
            return lockout_response(request)
        if form.is_valid() and totp.verify(step.user, form.cleaned_data["code"]):
            finish_sign_in(request, step)
            return HttpResponseRedirect(safe_next(request))
        count_failure(request, step.user)
        form.add_error(None, _("That code is not right. Enter the current code of your authenticator app."))
    context = {"form": form, "next": safe_next(request)}
    return render(request, "registration/login_code.html", context, status=400 if form.errors else 200)


def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator (also mid-sign-in, for administrators who must), or
    see and remove one."""
    step = totp.pending(request)
    if step is not None and step.must_enrol:
        return enrol(request, step.user, step)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    user = User.objects.get(pk=request.user.pk)
    if totp.confirmed_device(user) is None:
        return enrol(request, user, None)
    return manage(request, user)


def enrol(request: HttpRequest, user: User, step: totp.Pending | None) -> HttpResponse:
    device = totp.enrolment_device(user)
    form = CodeForm(request.POST if request.method == "POST" else None)  # an empty POST is bound too
    if request.method == "POST":
        if step is not None and locked_out(request, user):
            return lockout_response(request)
        codes = totp.confirm(device, form.cleaned_data["code"]) if form.is_valid() else None
        if codes is not None:
            if step is not None:
                finish_sign_in(request, step)
            return render(request, "registration/recovery_codes.html", {"codes": codes, "next": safe_next(request)})
        if step is not None:
            count_failure(request, user)
        form.add_error(None, _("That code is not right. Enter the code the app shows now."))
    context: dict[str, Any] = {
        "form": form,
        "qr_svg": totp.qr_svg(device),
        "secret": totp.secret_text(device),
        "required": step is not None,
        "next": safe_next(request),
    }
    return render(request, "registration/totp_enrol.html", context, status=400 if form.errors else 200)


def manage(request: HttpRequest, user: User) -> HttpResponse:
    """New recovery codes, or removing the authenticator (not for administrators
    who must have one); both ask for a current code."""
    form = CodeForm(request.POST if request.method == "POST" else None)  # an empty POST is bound too
    required = bool(settings.TOTP_REQUIRED_FOR_STAFF and user.is_staff)
    if request.method == "POST":
        if locked_out(request, user):
            return lockout_response(request)
        action = request.POST.get("action")
        if not form.is_valid() or not totp.verify(user, form.cleaned_data["code"]):
            count_failure(request, user)  # a stolen session must not guess its way to recovery codes
            form.add_error(None, _("That code is not right. Enter the current code of your authenticator app."))
        elif action == "recovery":
            return render(request, "registration/recovery_codes.html", {"codes": totp.new_recovery_codes(user)})
        elif action == "remove" and not required:
            totp.remove(user)
            messages.success(request, _("The authenticator is removed: signing in needs only the password again."))
            return redirect("account_two_factor")
        else:
            form.add_error(None, _("Administrators must keep their authenticator."))
    context = {"form": form, "required": required}
    return render(request, "webadmin/account_two_factor.html", context, status=400 if form.errors else 200)


def sign_in_options(request: HttpRequest) -> dict[str, Any]:
    """Template context: the directory's button on the login page."""
    return {
        "oidc_enabled": bool(getattr(settings, "OIDC_ENABLED", False)),
        "oidc_provider_name": getattr(settings, "OIDC_PROVIDER_NAME", ""),
    }
