"""The deletion lock refuses a superuser on every path: the ORM (instance,
queryset, files, cascades), the Django admin, the API, the web routes and the
deletion service itself before the retention end or while held."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from api import tokens
from archive.models import Document, DocumentFile
from archive.retention import deletion, expiry, lock
from archive.retention.models import ExpiryItem, ExpiryList, ExpiryStatus, ItemStatus
from tests.retention.conftest import NOW


@pytest.fixture
def document(make_mail, policy):
    policy()  # CH 10 years: a mail of 2030 is kept until the end of 2040
    return make_mail("2030-05-05")


def survives(document: Document) -> bool:
    return Document.objects.filter(pk=document.pk).exists() and DocumentFile.objects.filter(document=document).exists()


def test_the_lock_is_on_by_default(settings):
    assert settings.RETENTION_DELETION_LOCK is True and lock.lock_enabled()


def refused(delete, match: str = "deletion lock") -> None:
    # A savepoint per attempt: the refused delete's transaction is rolled back, the test's goes on.
    with pytest.raises(lock.DeletionRefused, match=match), transaction.atomic():
        delete()


def test_the_orm_cannot_delete_a_document_or_its_files(document):
    refused(document.delete)
    refused(Document.objects.filter(pk=document.pk).delete)
    refused(Document.objects.all().delete)
    refused(DocumentFile.objects.filter(document=document).delete)
    refused(document.files.get().delete)
    assert survives(document)


def test_even_past_its_retention_end_a_document_goes_only_through_an_expiry_list(make_mail, policy):
    policy()
    old = make_mail("2001-01-01")
    refused(Document.objects.filter(pk=old.pk).delete)
    assert survives(old)


def test_the_django_admin_refuses_a_superuser(client, admin_user, document):
    client.force_login(admin_user)
    # Documents are not in the admin; the owner group's delete is refused (PROTECT), nothing cascades.
    group = Group.objects.get(pk=document.owner_group_id)
    url = reverse("admin:auth_group_delete", args=[group.pk])
    response = client.post(url, {"post": "yes"})
    assert response.status_code in (200, 403)
    assert survives(document) and Group.objects.filter(pk=group.pk).exists()
    response = client.post(
        reverse("admin:auth_group_changelist"),
        {"action": "delete_selected", "_selected_action": [group.pk], "post": "yes"},
    )
    assert survives(document) and Group.objects.filter(pk=group.pk).exists()
    from django.contrib import admin

    for model, model_admin in admin.site._registry.items():
        if model in (Document, DocumentFile):
            assert not model_admin.has_delete_permission(response.wsgi_request)


def test_the_api_has_no_delete(admin_user, document):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.token_create(admin_user, 'x', ['read', 'upload'])[1]}")
    file = document.files.get()
    for url in (
        reverse("api:document", args=[document.pk]),
        reverse("api:file", args=[document.pk, file.pk]),
        reverse("api:documents"),
    ):
        assert client.delete(url).status_code == 405, url
    assert survives(document)


def _routes(patterns, namespace=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            if p.app_name not in ("admin", "api"):
                yield from _routes(p.url_patterns, f"{namespace}{p.namespace}:" if p.namespace else namespace)
        elif isinstance(p, URLPattern) and p.name:
            yield namespace + p.name, tuple(p.pattern.converters)


def test_no_web_route_deletes_a_document(client, admin_user, document):
    client.force_login(admin_user)
    file = document.files.get()
    values = {"number": document.pk, "file_id": file.pk, "part": "1", "pk": 1, "kind": "imap"}
    for name, kwargs in _routes(get_resolver().url_patterns):
        if name == "logout":
            continue
        url = reverse(name, kwargs={k: values[k] for k in kwargs})
        client.delete(url)
        client.post(url, {"delete": "1", "decision": "approve"})
    assert survives(document)


def _approved_list(document: Document, admin_user) -> ExpiryList:
    expiry_list = ExpiryList.objects.create(created=NOW, status=ExpiryStatus.APPROVED, first_approver=admin_user)
    ExpiryItem.objects.create(expiry_list=expiry_list, document=document.pk, policy="CH", retention_end="2000-01-01")
    return expiry_list


def test_the_deletion_service_refuses_before_the_retention_end(document, admin_user):
    expiry_list = _approved_list(document, admin_user)
    assert expiry.expiry_list_execute(expiry_list.pk, NOW) == 0
    assert survives(document)
    assert expiry_list.items.get().status == ItemStatus.KEPT_RETENTION


def test_the_deletion_service_refuses_an_unapproved_list(make_mail, policy, admin_user):
    policy()
    old = make_mail("2001-01-01")
    expiry_list = _approved_list(old, admin_user)
    ExpiryList.objects.filter(pk=expiry_list.pk).update(status=ExpiryStatus.OPEN)
    expiry_list.refresh_from_db()
    with pytest.raises(deletion.NotApproved):
        deletion.documents_delete(expiry_list, list(expiry_list.items.all()), NOW)
    assert expiry.expiry_list_execute(expiry_list.pk, NOW) == 0
    assert survives(old)


# InnoDB's full-text index sees committed rows only: a search query needs committed documents.
@pytest.mark.django_db(transaction=True)
def test_with_the_lock_off_direct_deletes_work_but_never_of_a_held_document(settings, make_mail, hold):
    settings.RETENTION_DELETION_LOCK = False
    free = make_mail("2030-01-01")
    held = make_mail("2030-01-01", values={"title": "Contract ACME"})
    hold(query="acme")
    free.delete()
    assert not Document.objects.filter(pk=free.pk).exists()
    refused(Document.objects.filter(pk=held.pk).delete, match="legal hold")
    assert survives(held)
