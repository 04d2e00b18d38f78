"""Microsoft 365 sources in WebAdmin: the form (write-only client secret, validation), the
test-connection button and ``manage.py mailtest`` with a specific message for every failure,
and the secret kept out of dumps, logs, task messages and pages (issue 4 items 1, 4 and 6).

Everything runs through the product's real code paths against the local Entra ID + Graph
fake; only configuration points at it."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.urls import reverse

from archive.models import FieldDefinition
from mailsources.models import MailSource, RunStatus, SourceKind
from mailsources.secrets import decrypt_secret
from tests.fakes.graph_fake import GraphFake, free_port, make_mime
from tests.mailsources import graph_pipeline
from tests.mailsources.graph_pipeline import ALICE, BOB, M365, add_mails, sync

# The fixtures this module uses (the fake, Django configured to talk to it, a tenant in it).
graph_server = graph_pipeline.graph_server
fake = graph_pipeline.fake
loopback_only = graph_pipeline.loopback_only
graph_settings = graph_pipeline.graph_settings
m365 = graph_pipeline.m365

pytestmark = pytest.mark.django_db


def m365_form(m365: M365, group: Any, **overrides: str | None) -> dict[str, str]:
    data: dict[str, str | None] = {
        "name": "Contoso mail",
        "tenant": m365.tenant,
        "client_id": m365.client_id,
        "secret": m365.secret,
        "mailboxes": ALICE,
        "page_size": "25",
        "enabled": "on",
        "interval_minutes": "15",
        "folders": "Inbox",
        "owner_group": str(group.pk),
        "min_age_days": "0",
        "after_archive": "keep",
        "from_field": str(FieldDefinition.objects.get(name="from").pk),
        "to_field": str(FieldDefinition.objects.get(name="to").pk),
        "subject_field": str(FieldDefinition.objects.get(name="subject").pk),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def create(admin_client: Any, m365: M365, group: Any, **overrides: str | None) -> MailSource:
    response = admin_client.post(reverse("mailsources:create", args=["m365"]), m365_form(m365, group, **overrides))
    assert response.status_code == 302, response.context and response.context["form"].errors
    return MailSource.objects.get(name=overrides.get("name") or "Contoso mail")


def pages_of(admin_client: Any, source: MailSource) -> str:
    return "".join(
        admin_client.get(url).content.decode()
        for url in (
            reverse("mailsources:list"),
            reverse("mailsources:detail", args=[source.pk]),
            reverse("mailsources:edit", args=[source.pk]),
        )
    )


# --------------------------------------------------------------------------- the form


def test_creating_a_source_stores_the_client_secret_encrypted_and_never_shows_it(
    admin_client: Any, m365: M365, group_a: Any
) -> None:
    page = admin_client.get(reverse("mailsources:create", args=["m365"])).content.decode()
    assert "Mail.Read" in page and "Mail.ReadWrite" in page and "admin consent" in page
    assert "application access policy" in page and "Number of mails (Office 365)" in page

    source = create(admin_client, m365, group_a, mailboxes=f"{ALICE}, {BOB}")

    assert source.kind == SourceKind.M365 and source.tenant == m365.tenant and source.page_size == 25
    assert source.mailbox_list == [ALICE, BOB]
    assert m365.secret.encode() not in bytes(source.secret_encrypted)
    assert decrypt_secret(source.secret_encrypted) == m365.secret
    assert m365.secret not in pages_of(admin_client, source)


def test_editing_without_the_secret_keeps_the_stored_one(admin_client: Any, m365: M365, group_a: Any) -> None:
    source = create(admin_client, m365, group_a)
    response = admin_client.post(
        reverse("mailsources:edit", args=[source.pk]), m365_form(m365, group_a, secret="", page_size="500")
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.page_size == 500 and decrypt_secret(source.secret_encrypted) == m365.secret


@pytest.mark.parametrize(("field", "label"), [("tenant", "Tenant"), ("client_id", "Client ID")])
def test_changing_tenant_or_client_id_requires_the_secret_again(
    admin_client: Any, m365: M365, group_a: Any, field: str, label: str
) -> None:
    source = create(admin_client, m365, group_a)
    other = str(uuid.uuid4())
    response = admin_client.post(
        reverse("mailsources:edit", args=[source.pk]), m365_form(m365, group_a, secret="", **{field: other})
    )
    assert response.status_code == 200
    assert f"because {label} changed" in str(response.context["form"].errors["secret"])
    source.refresh_from_db()
    assert getattr(source, field) != other

    response = admin_client.post(
        reverse("mailsources:edit", args=[source.pk]),
        m365_form(m365, group_a, secret="the-new-secret", **{field: other}),
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert getattr(source, field) == other and decrypt_secret(source.secret_encrypted) == "the-new-secret"


def test_a_new_source_needs_the_secret(admin_client: Any, m365: M365, group_a: Any) -> None:
    response = admin_client.post(reverse("mailsources:create", args=["m365"]), m365_form(m365, group_a, secret=""))
    assert "secret" in response.context["form"].errors and not MailSource.objects.exists()


@pytest.mark.parametrize(
    ("page_size", "valid"),
    [
        ("1", True),
        ("25", True),
        ("1000", True),
        ("0", False),
        ("1001", False),
        ("-5", False),
        ("many", False),
        ("", False),
    ],
)
def test_number_of_mails_is_1_to_1000(admin_client: Any, m365: M365, group_a: Any, page_size: str, valid: bool) -> None:
    response = admin_client.post(
        reverse("mailsources:create", args=["m365"]), m365_form(m365, group_a, page_size=page_size)
    )
    if valid:
        assert response.status_code == 302 and MailSource.objects.get().page_size == int(page_size)
    else:
        assert "page_size" in response.context["form"].errors and not MailSource.objects.exists()


@pytest.mark.parametrize(
    ("mailboxes", "stored"),
    [
        (f" {ALICE} ,{BOB}\r\ncarol@contoso.com ", f"{ALICE}\n{BOB}\ncarol@contoso.com"),
        ("", None),
        (" \n , ", None),
        ("alice", None),
        (f"{ALICE}, not an address", None),
        ("@contoso.com", None),
    ],
)
def test_mailboxes_are_validated(
    admin_client: Any, m365: M365, group_a: Any, mailboxes: str, stored: str | None
) -> None:
    response = admin_client.post(
        reverse("mailsources:create", args=["m365"]), m365_form(m365, group_a, mailboxes=mailboxes)
    )
    if stored is not None:
        assert response.status_code == 302 and MailSource.objects.get().mailboxes == stored
    else:
        assert "mailboxes" in response.context["form"].errors and not MailSource.objects.exists()


def test_tenant_and_client_id_are_required(admin_client: Any, m365: M365, group_a: Any) -> None:
    response = admin_client.post(
        reverse("mailsources:create", args=["m365"]), m365_form(m365, group_a, tenant="", client_id="")
    )
    errors = response.context["form"].errors
    assert "tenant" in errors and "client_id" in errors and not MailSource.objects.exists()


# --------------------------------------------------------------------------- test connection


def test_the_connection_test_shows_the_mailbox_its_inbox_and_the_newest_mail(
    admin_client: Any, fake: GraphFake, m365: M365, capsys: Any
) -> None:
    m365.add_mailbox(BOB)
    add_mails(fake, "inbox", 2)
    fake.add_message(ALICE, "inbox", make_mime("Quarterly report"))  # received now: the newest
    source = m365.source(mailboxes=[ALICE, BOB])

    call_command("mailtest", source.name)
    out = capsys.readouterr().out
    assert f"Authenticated (tenant {m365.tenant}, app {m365.client_id})" in out
    assert f"Mailbox: {ALICE}" in out and "Inbox: 3 messages" in out
    assert "Newest message: Quarterly report" in out
    assert f"Mailbox: {BOB}" in out and "Inbox: 0 messages" in out and "(the inbox is empty)" in out
    call_command("mailtest", str(source.pk))  # by number too
    assert "Quarterly report" in capsys.readouterr().out

    page = html.unescape(admin_client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode())
    assert "Connection test passed" in page and "Authenticated" in page
    assert f"Mailbox: {ALICE}" in page and "Inbox: 3 messages" in page and "Quarterly report" in page


def unreachable(settings: Any, *, entra: bool) -> None:
    closed = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    settings.GRAPH_URL = closed
    if entra:
        settings.GRAPH_AUTHORITY_HOST = closed


# scenario -> (set it up: (m365, fake, settings) -> source, texts the message must contain)
Scenario = tuple[Callable[[M365, GraphFake, Any], MailSource], list[str]]
FAILURES: dict[str, Scenario] = {
    "bad client secret": (
        lambda m, f, s: m.source(secret="Wrong~secret-value-7q"),
        ["rejected the client secret (AADSTS7000215)", "Value, not its Secret ID"],
    ),
    "expired client secret": (
        lambda m, f, s: (f.update_app(m.client_id, secret_expired=True), m.source())[1],
        ["client secret of app", "has expired (AADSTS7000222)"],
    ),
    "unknown application": (
        lambda m, f, s: m.source(client_id="0c9d7e7a-1d3e-4a53-9d55-1c7bb5f1c7a1"),
        ["Application 0c9d7e7a-1d3e-4a53-9d55-1c7bb5f1c7a1 was not found", "(AADSTS700016)"],
    ),
    "unknown tenant": (
        lambda m, f, s: m.source(tenant="nowhere.onmicrosoft.com"),
        ["Tenant 'nowhere.onmicrosoft.com' was not found (AADSTS90002)"],
    ),
    "app lacks Mail.Read": (
        lambda m, f, s: (f.update_app(m.client_id, roles=["User.Read.All"]), m.source())[1],
        [
            "Access to mailbox alice@contoso.com was denied (403 ErrorAccessDenied",
            "application permission Mail.Read",
            "admin consent",
        ],
    ),
    "blocked by an access policy": (
        lambda m, f, s: (f.update_app(m.client_id, allowed_mailboxes=[BOB]), m.source())[1],
        ["Access to mailbox alice@contoso.com was denied", "Access to OData is disabled.", "application access policy"],
    ),
    "unknown mailbox": (
        lambda m, f, s: m.source(mailboxes=["nobody@contoso.com"]),
        ["Mailbox nobody@contoso.com was not found (404 ErrorInvalidUser)"],
    ),
    "mailbox not enabled for REST": (
        lambda m, f, s: (
            m.add_mailbox("onprem@contoso.com", state="not_rest"),
            m.source(mailboxes=["onprem@contoso.com"]),
        )[1],
        ["Mailbox onprem@contoso.com cannot be read through Microsoft Graph (MailboxNotEnabledForRESTAPI)"],
    ),
    "Microsoft unreachable": (
        lambda m, f, s: (unreachable(s, entra=True), m.source())[1],
        ["Microsoft Entra ID (127.0.0.1:", "is unreachable"],
    ),
    "Graph unreachable": (
        lambda m, f, s: (unreachable(s, entra=False), m.source())[1],
        ["Microsoft Graph (127.0.0.1:", "is unreachable"],
    ),
    "TLS certificate not trusted": (
        lambda m, f, s: (setattr(s, "MAIL_CA_FILE", None), m.source())[1],
        ["TLS certificate of 127.0.0.1:", "is not trusted"],
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_every_connection_failure_has_its_own_message_in_mailtest_and_webadmin(
    admin_client: Any, fake: GraphFake, m365: M365, graph_settings: Any, failure: str
) -> None:
    make, texts = FAILURES[failure]
    add_mails(fake, "inbox", 1)
    source = make(m365, fake, graph_settings)

    with pytest.raises(CommandError) as caught:
        call_command("mailtest", source.name)
    message = str(caught.value)
    for text in texts:
        assert text in message

    page = html.unescape(admin_client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode())
    assert "Connection test failed" in page
    for text in texts:
        assert text in page
    assert m365.secret not in message + page and "Wrong~secret-value-7q" not in message + page


# --------------------------------------------------------------------------- the secret stays secret


LIBRARY_LOGGERS = ["", "O365", "msal", "urllib3", "requests", "mailsources", "django"]


@pytest.mark.django_db(transaction=True)
def test_the_client_secret_never_appears_in_dumps_logs_task_messages_or_pages(
    admin_client: Any, fake: GraphFake, m365: M365, group_a: Any, caplog: Any
) -> None:
    for name in LIBRARY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    add_mails(fake, "inbox", 3)
    source = create(admin_client, m365, group_a)
    wrong = "Wrong~secret-value-9z"

    # Everything that touches the secret: test connection (good and bad), a sync, "sync now".
    admin_client.post(reverse("mailsources:test", args=[source.pk]))
    run = sync(source)
    assert run.status == RunStatus.OK and run.new == 3
    broker = Path(django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_out"])
    queued_before = set(broker.iterdir())
    admin_client.post(reverse("mailsources:sync", args=[source.pk]))
    messages = [broker / name for name in set(broker.iterdir()) - queued_before]
    admin_client.post(reverse("mailsources:edit", args=[source.pk]), m365_form(m365, group_a, secret=wrong))
    failed = admin_client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode()
    assert "AADSTS7000215" in failed

    # The task message: the source's id, nothing else.
    bodies = []
    for path in messages:
        envelope = json.loads(path.read_text())
        body = base64.b64decode(envelope["body"]).decode()
        bodies.append(path.read_text() + body)
        if envelope["headers"]["task"] == "mailsources.tasks.sync_source":
            args, kwargs, _ = json.loads(body)
            assert args == [source.pk] and kwargs == {}
    assert any("mailsources.tasks.sync_source" in b for b in bodies)

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    logged = caplog.text + "".join(repr(r.args) + str(r.msg) for r in caplog.records)
    assert caplog.records and "token" in logged.lower()  # the loggers were listening
    for secret in (m365.secret, wrong):
        assert secret not in dump.getvalue()
        assert secret not in logged
        assert all(secret not in body for body in bodies)
        assert secret not in failed + pages_of(admin_client, source)
