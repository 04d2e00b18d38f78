"""Writes and actions on mail sources: secrets, clients, runs, dispatch."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mailsources.clients.base import ConnectionReport, MailClient, PermanentSourceError
from mailsources.models import AfterArchive, MailSource, SourceKind, SourceStatus
from mailsources.secrets import SecretUnavailable, decrypt_secret, encrypt_secret

if TYPE_CHECKING:
    from mailsources.pacing import RedisRequestGate


def source_set_secret(source: MailSource, secret: str) -> None:
    """Store the IMAP password / client secret encrypted; never readable back."""
    source.secret_encrypted = encrypt_secret(secret)


def client_for_source(source: MailSource, mailbox: str = "") -> MailClient:
    """A client for one mailbox of ``source`` (plain values only cross over)."""
    if source.kind == SourceKind.IMPORT:
        from mailsources.imports import import_client

        return import_client(source)
    try:
        secret = decrypt_secret(source.secret_encrypted)
    except SecretUnavailable as exc:
        # Retrying cannot help: someone must enter the password / secret again.
        raise PermanentSourceError(str(exc), code="secret_unavailable") from None
    from archive import storage

    if source.kind == SourceKind.IMAP:
        from mailsources.clients.imap import ImapClient

        return ImapClient(
            source.host,
            source.port,
            security=source.security,
            username=source.username,
            password=secret,
            ca_file=source.ca_file or settings.MAIL_CA_FILE,
            max_message_bytes=settings.MAIL_MAX_MESSAGE_BYTES,
            allow_unencrypted=source.allow_unencrypted,
            raw_sink=storage.put_chunks,  # huge mails go straight from the socket to the store
        )
    from mailsources.clients.graph import GraphClient

    gate = graph_request_gate()
    return GraphClient(
        source.tenant,
        source.client_id,
        secret,
        mailbox or source.mailbox_list[0],
        page_size=source.page_size,
        authority_host=settings.GRAPH_AUTHORITY_HOST,
        graph_url=settings.GRAPH_URL,
        ca_bundle=settings.MAIL_CA_FILE,
        # Paced once: by the gate all workers share, else by the client itself.
        rate_limit=None if gate is not None else graph_rate_limit(),
        request_gate=gate,
        raw_sink=storage.put_chunks,  # huge mails go from the response straight to the store
    )


def graph_rate_limit() -> tuple[int, float]:
    return (settings.GRAPH_RATE_LIMIT_REQUESTS, float(settings.GRAPH_RATE_LIMIT_SECONDS))


def graph_request_gate() -> RedisRequestGate | None:
    """Graph's per-mailbox limits shared by all workers (Redis: at most 4 requests in
    flight, paced together), or None on the embedded broker, where all workers share
    one machine and each client paces itself."""
    from mailsources.pacing import redis_request_gate

    return redis_request_gate(rate_limit=graph_rate_limit())


def source_test_connection(source: MailSource) -> list[ConnectionReport]:
    """Log in and look around; raises SourceError with a specific message."""
    reports = []
    for mailbox in source.sync_mailboxes:
        client = client_for_source(source, mailbox)
        try:
            reports.append(client.test_connection())
            if source.after_archive != AfterArchive.KEEP:
                client.check_action_supported(source.after_archive)
        finally:
            client.close()
    return reports


def sources_due(now: datetime | None = None) -> list[int]:
    """Ids of enabled sources whose next run is due, claimed so the next
    dispatcher tick does not enqueue them again."""
    now = now or timezone.now()
    due = []
    candidates = (
        MailSource.objects.filter(enabled=True)
        .exclude(status=SourceStatus.ERROR)
        .filter(Q(next_run_at__isnull=True) | Q(next_run_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    )
    for source in candidates.only("pk", "interval_minutes", "next_run_at"):
        with transaction.atomic():
            # Conditional update: with two dispatchers, only one claims the slot.
            claimed = MailSource.objects.filter(pk=source.pk, next_run_at=source.next_run_at).update(
                next_run_at=now + timedelta(minutes=source.interval_minutes)
            )
        if claimed:
            due.append(source.pk)
    return due


def source_request_sync(source: MailSource) -> None:
    """ "Sync now": clear a stopped state and run at the next opportunity."""
    MailSource.objects.filter(pk=source.pk).update(
        next_run_at=timezone.now(),
        status=SourceStatus.IDLE if source.status == SourceStatus.ERROR else source.status,
    )
