"""The user's own API tokens page: create (the secret shown once) and revoke."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from api import tokens
from api.models import Scope


def _member(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # behind @login_required
    return user


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, label=_("Name"), help_text=_("What the token is for, e.g. the script using it.")
    )
    scopes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label=_("Scopes"))

    def __init__(self, *args: Any, allowed: set[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["scopes"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(s.value, s.label) for s in Scope if s.value in allowed]
        field.initial = [Scope.READ.value]


@never_cache  # the page that shows a new secret must not be kept anywhere
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    user = _member(request)
    allowed = tokens.allowed_scopes(user)
    form = TokenForm(request.POST or None, allowed=allowed)
    secret = ""
    if request.method == "POST" and form.is_valid():
        try:
            token, secret = tokens.token_create(user, form.cleaned_data["name"], form.cleaned_data["scopes"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            form = TokenForm(allowed=allowed)
    context = {"form": form, "secret": secret, "tokens": tokens.tokens_of_user(user)}
    return render(request, "api/tokens.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = tokens.token_get_for_user(_member(request), pk)
    if token is None:
        raise Http404("No such token")
    tokens.token_revoke(token)
    messages.success(request, _("Token %(prefix)s… revoked.") % {"prefix": token.prefix})
    return redirect("tokens")
