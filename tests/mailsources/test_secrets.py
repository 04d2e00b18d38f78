"""The IMAP password is write-only: encrypted at rest with a key that is not in
the database, and never in a dump, a log line, a rendered page or a task message."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from mailsources import services, tasks
from mailsources.clients.base import SourceError, TransientSourceError
from mailsources.models import MailSource
from tests.mailsources.imap_pipeline import mail, sync

pytestmark = pytest.mark.django_db


def assert_absent(secret: str, text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        assert secret.encode() not in text, f"the password appears in {where}"
    else:
        assert secret not in text, f"the password appears in {where}"


@pytest.fixture
def synced_source(imap_mailbox, imap_source):
    imap_mailbox.append("INBOX", mail("something to archive"))
    sync(imap_source)
    return imap_source


def test_the_password_is_not_in_a_database_dump(imap_mailbox, synced_source):
    password = imap_mailbox.user.password
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    assert_absent(password, out.getvalue(), "manage.py dumpdata")
    assert MailSource.objects.get().secret_encrypted  # there is something, encrypted

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {MailSource._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1  # the one source
    for row in rows:
        for value in row:
            raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
            assert_absent(password, raw, "the mail sources table")


def test_the_password_never_reaches_the_logs(
    imap_mailbox, imap_source_factory, caplog, capfd, tcp_proxy_factory, dovecot, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    password = imap_mailbox.user.password
    imap_mailbox.append("INBOX", mail("logged run", "z" * 50_000))
    source = imap_source_factory(imap_mailbox)
    services.source_test_connection(source)
    sync(source)
    # A wrong password, and a connection dying mid-fetch: errors with tracebacks.
    wrong = "Wr0ng-but-also-secret"
    bad = imap_source_factory(imap_mailbox, name="bad password", password=wrong)
    sync(bad)
    try:
        services.source_test_connection(bad)
    except SourceError:
        logging.getLogger("mailsources").exception("connection test failed")  # with traceback
    proxy = tcp_proxy_factory("127.0.0.1", dovecot.tls_port, cut_after_server_bytes=30_000)
    cut = imap_source_factory(imap_mailbox, name="cut", port=proxy.port)
    monkeypatch.setattr(tasks.sync_source, "retry", lambda **kwargs: kwargs["exc"])
    with pytest.raises(TransientSourceError):
        tasks.sync_source(cut.pk)  # logs the retry, with the error

    assert "Authentication failed" in caplog.text and "retry in" in caplog.text
    assert "Traceback" in caplog.text
    out, err = capfd.readouterr()
    for secret in (password, wrong):
        assert_absent(secret, caplog.text, "the log")
        for record in caplog.records:
            assert_absent(secret, record.getMessage(), f"log record {record.name}")
            assert_absent(secret, repr(record.args), f"log record args {record.name}")
        assert_absent(secret, out + err, "stdout/stderr")
    for stored in MailSource.objects.all():
        for run in stored.runs.all():
            assert_absent(password, run.errors, "the run history")
            assert_absent(wrong, run.errors, "the run history")
        assert_absent(wrong, stored.status_message, "the status message")


def test_the_password_is_never_rendered_in_webadmin(imap_mailbox, imap_source_factory, client, admin_user):
    password = imap_mailbox.user.password
    source = imap_source_factory(imap_mailbox)
    imap_mailbox.append("INBOX", mail("x"))
    sync(source)
    client.force_login(admin_user)

    for name in ("mailsources:edit", "mailsources:detail"):
        response = client.get(reverse(name, args=[source.pk]))
        assert response.status_code == 200
        assert_absent(password, response.content, name)
    form = client.get(reverse("mailsources:edit", args=[source.pk])).context["form"]
    assert form["secret"].value() in (None, "")
    response = client.post(reverse("mailsources:test", args=[source.pk]), follow=True)
    assert "Connection test passed" in response.content.decode()
    assert_absent(password, response.content, "the connection test result")


@pytest.fixture
def sent_task_messages(monkeypatch):
    """What would go over the broker: (task name, headers, body) of every message."""
    sent = []
    amqp = tasks.sync_source.app.amqp

    def capture(producer, name, message, **options):
        sent.append((name, message.headers, message.body))

    monkeypatch.setattr(amqp, "send_task_message", capture)
    return sent


def test_celery_task_messages_carry_only_the_source_id(
    imap_mailbox, imap_source, client, admin_user, sent_task_messages
):
    password = imap_mailbox.user.password

    tasks.sync_source.delay(imap_source.pk)
    tasks.dispatch_due_sources()
    client.force_login(admin_user)
    client.post(reverse("mailsources:sync", args=[imap_source.pk]))  # "Sync now"

    assert len(sent_task_messages) == 3
    for name, headers, body in sent_task_messages:
        assert name == "mailsources.tasks.sync_source"
        args, kwargs, _embed = body
        assert list(args) == [imap_source.pk] and kwargs == {}
        assert_absent(password, json.dumps([headers, body], default=str), "a task message")
