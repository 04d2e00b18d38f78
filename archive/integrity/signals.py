"""Acts the audit log learns of through signals, whatever code path made them:

- sign-in, sign-out, failed sign-in (Django's signals: every authentication
  backend sends them) and the lockout of django-axes;
- changes of users, groups, permissions and field definitions (model signals:
  the Django admin or any WebAdmin page), by the user of the request being
  answered (``audit.current_request``). Changes outside a request (migrations,
  ``createsuperuser``, a shell on the server) are not acts of the application
  and are not logged: whoever has the server's shell has its database too.

A user's password is never logged, nor its hash: only that it changed. A save
that only moves ``last_login`` (every sign-in) is not an administrative act.

``ensure_auditors_group`` (after every migrate and every test flush) keeps the
group "Auditors" with the audit permission."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.http import HttpRequest

from archive.models import Document, FieldDefinition

from . import audit, ledger
from .audit import AuditAction, Outcome
from .models import LedgerEvent

AUDITORS_GROUP = "Auditors"
AUDIT_CODENAME = "audit"

# What a change of each model records, besides its name: the fields compared
# before and after a save. Secrets are listed in SECRET_FIELDS: "changed" only.
TRACKED: dict[type[Model], tuple[str, tuple[str, ...]]] = {
    User: (
        AuditAction.USER_CHANGED,
        ("username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser", "password"),
    ),
    Group: (AuditAction.GROUP_CHANGED, ("name",)),
    FieldDefinition: (
        AuditAction.FIELD_DEFINITION_CHANGED,
        ("name", "label", "type", "internal", "in_reduced_table", "order", "choices"),
    ),
}
SECRET_FIELDS = {"password"}


def _username(credentials: dict[str, Any] | None) -> str:
    value = (credentials or {}).get("username")
    return audit.clip(value) if value is not None else ""


def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit.log(AuditAction.SIGN_IN, request, user=user, details={"backend": audit.clip(getattr(user, "backend", ""))})


def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit.log(AuditAction.SIGN_OUT, request, user=user)


def on_login_failed(
    sender: Any, credentials: dict[str, Any] | None = None, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # ``credentials`` come cleansed (the password masked); only the name is kept.
    audit.log(
        AuditAction.SIGN_IN_FAILED,
        request,
        user=None,
        outcome=Outcome.FAILED,
        details={"username": _username(credentials)},
    )


def on_locked_out(sender: Any, request: HttpRequest | None, username: str | None, **kwargs: Any) -> None:
    audit.log(
        AuditAction.SIGN_IN_LOCKED_OUT,
        request,
        user=None,
        outcome=Outcome.DENIED,
        details={"username": audit.clip(username or "")},
    )


def _label(instance: Model) -> dict[str, Any]:
    name = instance.get_username() if isinstance(instance, User) else str(instance)
    return {"model": instance._meta.label_lower, "id": instance.pk, "name": audit.clip(name)}


def _logged_save(sender: type[Model], raw: bool, update_fields: Any) -> bool:
    """A save by a request of the application, other than a sign-in's ``last_login``."""
    if raw or sender not in TRACKED or audit.current_request.get() is None:
        return False
    return update_fields is None or not set(update_fields) <= {"last_login"}


def on_pre_save(
    sender: type[Model], instance: Model, update_fields: Any = None, raw: bool = False, **kwargs: Any
) -> None:
    """Remember the stored values the save is about to replace (one query; these saves are rare)."""
    if instance.pk is None or not _logged_save(sender, raw, update_fields):
        return
    fields = TRACKED[sender][1]
    instance._audit_before = sender._default_manager.filter(pk=instance.pk).values(*fields).first()  # type: ignore[attr-defined]


def on_post_save(
    sender: type[Model], instance: Model, created: bool, update_fields: Any = None, raw: bool = False, **kwargs: Any
) -> None:
    if not _logged_save(sender, raw, update_fields):
        return
    action, fields = TRACKED[sender]
    before = getattr(instance, "_audit_before", None) or {}
    instance._audit_before = None  # type: ignore[attr-defined]
    changes: dict[str, Any] = {}
    for name in fields:
        old, new = before.get(name), getattr(instance, name)
        if not created and old == new:
            continue
        if name in SECRET_FIELDS:
            changes[name] = {"changed": True}
        else:
            changes[name] = {"new": audit.plain(new)} if created else {"old": audit.plain(old), "new": audit.plain(new)}
    if created or changes:
        audit.log_in_context(
            action, {**_label(instance), "change": "added" if created else "changed", "fields": changes}
        )


def on_post_delete(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    if sender in TRACKED and audit.current_request.get() is not None:
        audit.log_in_context(TRACKED[sender][0], {**_label(instance), "change": "deleted"})


# m2m_changed: the relation's name in the log, its act, and its attribute on
# the forward and the reverse side.
RELATIONS = {
    User.groups.through: ("groups", AuditAction.USER_CHANGED, "groups", "user_set"),
    User.user_permissions.through: ("permissions", AuditAction.PERMISSION_CHANGED, "user_permissions", "user_set"),
    Group.permissions.through: ("permissions", AuditAction.PERMISSION_CHANGED, "permissions", "group_set"),
}


def _names(model: type[Model], pks: set[Any]) -> list[str]:
    if model is Permission:
        rows = Permission.objects.filter(pk__in=pks).values_list("content_type__app_label", "codename")
        return sorted(f"{app}.{codename}" for app, codename in rows)
    if model is User:
        return sorted(User.objects.filter(pk__in=pks).values_list("username", flat=True))
    return sorted(str(o) for o in model._default_manager.filter(pk__in=pks))


def on_m2m_changed(
    sender: Any, instance: Model, action: str, reverse: bool, model: type[Model], pk_set: set[Any] | None, **kwargs: Any
) -> None:
    """Group memberships and permissions added or removed, from either side
    (``user.groups.add(g)`` and ``group.user_set.add(u)`` alike)."""
    if sender not in RELATIONS or audit.current_request.get() is None:
        return
    relation, audit_action, forward, backward = RELATIONS[sender]
    if action == "pre_clear":  # the set is gone after the clear: name it now
        related = getattr(instance, backward if reverse else forward)
        instance._audit_cleared = set(related.values_list("pk", flat=True))  # type: ignore[attr-defined]
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    pks = set(pk_set or ()) if action != "post_clear" else getattr(instance, "_audit_cleared", set())
    if not pks:
        return
    verb = "added" if action == "post_add" else "removed"
    audit.log_in_context(audit_action, {**_label(instance), "change": f"{relation} {verb}", verb: _names(model, pks)})


def ensure_auditors_group(**kwargs: Any) -> None:
    """The group "Auditors" with the permission ``integrity.audit`` (idempotent;
    after migrate, which creates the permission first, and after each flush)."""
    permission = Permission.objects.filter(content_type__app_label="integrity", codename=AUDIT_CODENAME).first()
    if permission is None:
        return  # the permission's migration has not run yet
    group, _ = Group.objects.get_or_create(name=AUDITORS_GROUP)
    group.permissions.add(permission)


# --- the ledger: a renamed owner group changes its documents' metadata -----------------

RENAME_BATCH = 500


def on_group_pre_save(sender: type[Group], instance: Group, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None:
        return
    instance._ledger_name_before = Group.objects.filter(pk=instance.pk).values_list("name", flat=True).first()  # type: ignore[attr-defined]


def on_group_post_save(sender: type[Group], instance: Group, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """The owner group's name is part of each document's canonical metadata
    (``ledger.document_metadata``): a rename appends an ``owner_changed`` entry
    with the new metadata hash for every document of the group, by whoever
    renamed it (also outside a request: a rename by hand must not look like
    tampering to ``verify``)."""
    before = getattr(instance, "_ledger_name_before", None)
    instance._ledger_name_before = None  # type: ignore[attr-defined]
    if created or raw or before is None or before == instance.name or not ledger.enabled():
        return
    request = audit.current_request.get()
    actor = ledger.actor_name(request.user if request is not None else None)
    details = {"group": instance.pk, "renamed": {"old": before, "new": instance.name}}
    with transaction.atomic():  # the rename's own, when the caller has one (the admin's, WebAdmin's)
        numbers = list(Document.objects.filter(owner_group=instance).order_by("pk").values_list("pk", flat=True))
        for i in range(0, len(numbers), RENAME_BATCH):
            chunk = Document.objects.filter(pk__in=numbers[i : i + RENAME_BATCH]).order_by("pk").select_for_update()
            ledger.record_many([(LedgerEvent.OWNER_CHANGED, d, actor, (), details) for d in chunk])


def connect() -> None:
    pre_save.connect(on_group_pre_save, sender=Group, dispatch_uid="ledger.group_pre_save")
    post_save.connect(on_group_post_save, sender=Group, dispatch_uid="ledger.group_post_save")
    user_logged_in.connect(on_logged_in, dispatch_uid="audit.sign_in")
    user_logged_out.connect(on_logged_out, dispatch_uid="audit.sign_out")
    user_login_failed.connect(on_login_failed, dispatch_uid="audit.sign_in_failed")
    user_locked_out.connect(on_locked_out, dispatch_uid="audit.locked_out")
    for model in TRACKED:
        pre_save.connect(on_pre_save, sender=model, dispatch_uid=f"audit.pre_save.{model._meta.label}")
        post_save.connect(on_post_save, sender=model, dispatch_uid=f"audit.post_save.{model._meta.label}")
        post_delete.connect(on_post_delete, sender=model, dispatch_uid=f"audit.post_delete.{model._meta.label}")
    for through in RELATIONS:
        m2m_changed.connect(on_m2m_changed, sender=through, dispatch_uid=f"audit.m2m.{through._meta.label}")
