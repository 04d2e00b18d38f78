"""WebAdmin pages for users and groups, in the product's look (the Django
admin stays for field definitions). Administrators (staff) only; only a
superuser may change a superuser or make one, and nobody deactivates or
demotes themselves (an archive must keep an administrator)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import password_validators_help_text_html, validate_password
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive.access import staff_required

User = get_user_model()

if TYPE_CHECKING:  # generic only in django-stubs
    _ModelForm = forms.ModelForm[Any]
else:
    _ModelForm = forms.ModelForm


def _group_field(required: bool = False) -> forms.ModelMultipleChoiceField[Group]:
    return forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=required,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("Groups"),
        help_text=gettext_lazy("The user sees the documents of these groups."),
    )


class UserForm(_ModelForm):
    groups = _group_field()

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "is_active", "is_staff", "groups"]
        labels = {"is_active": gettext_lazy("Active"), "is_staff": gettext_lazy("Administrator (WebAdmin)")}
        help_texts = {
            "is_active": gettext_lazy("Inactive users cannot sign in; their name stays in the records."),
            "is_staff": gettext_lazy("May open WebAdmin: archive settings, mail sources, users and groups."),
        }


class NewUserForm(UserForm):
    password1 = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label=gettext_lazy("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_password2(self) -> str:
        first, second = self.cleaned_data.get("password1"), str(self.cleaned_data.get("password2", ""))
        if first and second and first != second:
            raise forms.ValidationError(_("The two passwords differ."))
        return second

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password2")
        if password and not self.has_error("password2"):
            candidate = User(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                validate_password(password, candidate)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned

    def save(self, commit: bool = True) -> Any:
        user = super().save(commit=False)
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
            self.save_m2m()
        return user


class GroupForm(_ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("Members"),
        help_text=gettext_lazy("Members see the documents this group owns."),
    )

    class Meta:
        model = Group
        fields = ["name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["members"].initial = list(self.instance.user_set.values_list("pk", flat=True))

    def save(self, commit: bool = True) -> Group:
        group: Group = super().save(commit=True)
        group.user_set.set(self.cleaned_data["members"])
        return group


def _may_change(request: HttpRequest, user: AbstractUser) -> None:
    """Only a superuser changes a superuser (a staff member could otherwise take its account)."""
    if user.is_superuser and not request.user.is_superuser:
        raise PermissionDenied(_("Only a superuser may change a superuser."))


def _keep_oneself_admin(request: HttpRequest, form: UserForm) -> None:
    if form.instance.pk != request.user.pk:
        return
    for name, text in (
        ("is_active", _("You cannot deactivate your own account.")),
        ("is_staff", _("You cannot remove the administrator right of your own account.")),
    ):
        if name in form.cleaned_data and not form.cleaned_data[name]:
            form.add_error(name, text)


@staff_required
@require_GET
def user_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()[:150]
    users = User.objects.order_by("username").prefetch_related("groups")
    if q:
        users = users.filter(
            Q(username__icontains=q) | Q(first_name__icontains=q) | Q(last_name__icontains=q) | Q(email__icontains=q)
        )
    return render(request, "webadmin/users_list.html", {"users": users[:500], "q": q})


@staff_required
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    form = NewUserForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        messages.success(request, _("User “%(name)s” created.") % {"name": user.get_username()})
        return redirect("webadmin:users")
    return render(request, "webadmin/users_form.html", {"form": form, "title": _("New user")})


@staff_required
@require_http_methods(["GET", "POST"])
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    _may_change(request, user)
    form = UserForm(request.POST or None, instance=user)
    if request.method == "POST" and form.is_valid():
        _keep_oneself_admin(request, form)
        if form.is_valid():
            form.save()
            messages.success(request, _("User “%(name)s” saved.") % {"name": user.get_username()})
            return redirect("webadmin:users")
    return render(
        request,
        "webadmin/users_form.html",
        {"form": form, "title": _("Edit %(user)s") % {"user": user}, "edited": user},
    )


@staff_required
@require_http_methods(["GET", "POST"])
def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    _may_change(request, user)
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        if user.pk == request.user.pk:
            update_session_auth_hash(request, user)  # stay signed in
        messages.success(request, _("Password of “%(name)s” set.") % {"name": user.get_username()})
        return redirect("webadmin:users")
    return render(
        request,
        "webadmin/users_form.html",
        {"form": form, "title": _("Set the password of %(user)s") % {"user": user}, "edited": user},
    )


@staff_required
@require_POST
def user_active(request: HttpRequest, pk: int) -> HttpResponse:
    """Activate or deactivate (``active=1`` / ``0``): the account stays, sign-in stops."""
    user = get_object_or_404(User, pk=pk)
    _may_change(request, user)
    active = request.POST.get("active") == "1"
    if user.pk == request.user.pk and not active:
        messages.error(request, _("You cannot deactivate your own account."))
    else:
        User.objects.filter(pk=user.pk).update(is_active=active)
        text = _("User “%(name)s” activated.") if active else _("User “%(name)s” deactivated.")
        messages.success(request, text % {"name": user.get_username()})
    return redirect("webadmin:users")


@staff_required
@require_GET
def group_list(request: HttpRequest) -> HttpResponse:
    groups = Group.objects.order_by("name").annotate(members=Count("user"))
    return render(request, "webadmin/users_groups.html", {"groups": groups})


@staff_required
@require_http_methods(["GET", "POST"])
def group_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    group = None if pk is None else get_object_or_404(Group, pk=pk)
    form = GroupForm(request.POST or None, instance=group)
    if request.method == "POST" and form.is_valid():
        if not request.user.is_superuser:
            # Joining or leaving a group changes what a superuser sees not at all;
            # but a staff member must not move superusers around either.
            chosen = {u.pk for u in form.cleaned_data["members"]}
            before = set() if group is None else set(group.user_set.values_list("pk", flat=True))
            if User.objects.filter(pk__in=chosen ^ before, is_superuser=True).exists():
                raise PermissionDenied(_("Only a superuser may change a superuser."))
        saved = form.save()
        messages.success(request, _("Group “%(name)s” saved.") % {"name": saved.name})
        return redirect("webadmin:groups")
    title = _("New group") if group is None else _("Edit group %(name)s") % {"name": group.name}
    return render(request, "webadmin/users_form.html", {"form": form, "title": title})
