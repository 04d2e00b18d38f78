"""The IMAP client against a real Dovecot (no Django, no database).

Run alone with: .venv/bin/pytest -p no:django tests/mailsources/test_imap_client.py
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailsources.clients.base import (
    FolderBatch,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from mailsources.clients.imap import ImapClient
from tests.imap_server import FakeImapServer, Mailbox, free_port
from tests.tcp_proxy import TcpProxy

# Registers the fixtures even before tests/conftest.py lists this plugin (a no-op after).
pytest_plugins = ["tests.conftest_imap"]


def mail(subject: str, body: str = "Hello.", *, size: int = 0) -> bytes:
    """A small RFC 5322 message with CRLF line ends (what IMAP hands back)."""
    text = body + "\r\n" + ("x" * 76 + "\r\n") * (size // 78)
    return (
        f"From: Sender <sender@example.com>\r\nTo: alice@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{zlib.crc32(subject.encode())}.{size}@example.com>\r\n"
        f"Date: Mon, 6 Jan 2025 10:00:00 +0100\r\n\r\n{text}"
    ).encode()


class Ledger:
    """What the pipeline does with batches: record locations, then store the cursor."""

    def __init__(self) -> None:
        self.cursor: dict[str, Any] | None = None
        self.seen: dict[str, set[str]] = {}
        self.messages: list[tuple[str, str, bytes]] = []  # (epoch, uid, raw)

    def known(self, epoch: str, locations: Any) -> set[str]:
        have = self.seen.get(epoch, set())
        return {loc for loc in locations if loc in have}

    def commit(self, batch: FolderBatch) -> None:
        for message in batch.messages:
            self.messages.append((batch.epoch, message.location, message.raw))
            self.seen.setdefault(batch.epoch, set()).add(message.location)
        self.cursor = batch.cursor

    def run(self, client: ImapClient, folder: str = "INBOX", **kwargs: Any) -> list[FolderBatch]:
        batches = []
        for batch in client.sync_folder(folder, self.cursor, self.known, **kwargs):
            self.commit(batch)
            batches.append(batch)
        return batches


def uids_of(batches: list[FolderBatch]) -> list[int]:
    return [int(m.location) for b in batches for m in b.messages]


@pytest.fixture
def make_client(imap_mailbox: Mailbox) -> Iterator[Callable[..., ImapClient]]:
    clients: list[ImapClient] = []

    def make(mailbox: Mailbox | None = None, security: str = "tls", **overrides: Any) -> ImapClient:
        kwargs = (mailbox or imap_mailbox).client_kwargs(security, **overrides)
        client = ImapClient(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def fetches(sent: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [c for c in sent if c[:2] == ("UID", "FETCH") or c[0] == "FETCH"]


def body_fetches(sent: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [c for c in fetches(sent) if "BODY.PEEK[]" in " ".join(c)]


def assert_error(
    exc_info: pytest.ExceptionInfo[SourceError],
    kind: type[SourceError],
    code: str,
    *phrases: str,
    password: str = "",
) -> None:
    err = exc_info.value
    assert isinstance(err, kind), repr(err)
    assert err.code == code, (err.code, str(err))
    for phrase in phrases:
        assert phrase in str(err), str(err)
    if password:
        assert password not in str(err) and password not in repr(err)


# ------------------------------------------------------------------ test connection


def test_connection_lists_folders_with_counts_and_the_newest_subject(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    imap_mailbox.append("INBOX", mail("First"))
    imap_mailbox.append("INBOX", mail("=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_Z=C3=BCrich?="))
    imap_mailbox.append("Archiv", mail("Old one"))

    report = make_client().test_connection()

    assert report.newest_subject == "Grüße aus Zürich"
    assert [(f.name, f.total) for f in report.folders] == [("INBOX", 2), ("Archiv", 1)]
    text = "\n".join(report.lines)
    assert "Logged in as" in text and "INBOX (2)" in text and "Grüße aus Zürich" in text
    assert imap_mailbox.user.password not in text


def test_connection_with_starttls_on_the_plain_port(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    report = make_client(security="starttls").test_connection()
    assert report.folders[0].name == "INBOX"
    assert report.newest_subject is None and "INBOX is empty." in report.lines


def test_unencrypted_connections_need_explicit_permission(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    with pytest.raises(SourceError) as exc_info:
        make_client(security="none", allow_unencrypted=False).test_connection()
    assert_error(exc_info, PermanentSourceError, "unencrypted_not_allowed", "not allowed")

    assert [f.name for f in make_client(security="none").test_connection().folders] == ["INBOX"]


def test_wrong_password_is_an_authentication_failure_without_the_password(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    wrong = "Wr0ng-Secret-Pa55"
    with pytest.raises(SourceError) as exc_info:
        make_client(password=wrong).test_connection()
    assert_error(
        exc_info, PermanentSourceError, "auth_failed", "Authentication failed", imap_mailbox.user.name, password=wrong
    )
    assert wrong not in str(exc_info.value.__cause__)


def test_a_non_ascii_password_logs_in_with_sasl_plain(
    dovecot: Any, make_client: Callable[..., ImapClient], imap_commands: list[tuple[str, ...]]
) -> None:
    mailbox = dovecot.mailbox(dovecot.add_user(password="Grüezi-€-pässwort"))
    assert [f.name for f in make_client(mailbox).test_connection().folders] == ["INBOX"]
    assert ("AUTHENTICATE", "PLAIN") in imap_commands


def test_a_certificate_from_an_unknown_ca_is_not_trusted(make_client: Callable[..., ImapClient]) -> None:
    with pytest.raises(SourceError) as exc_info:
        make_client(ca_file=None).test_connection()
    assert_error(exc_info, PermanentSourceError, "tls_untrusted", "not trusted", "CA file")


def test_a_certificate_for_another_name_is_rejected(make_client: Callable[..., ImapClient]) -> None:
    # The test certificate names "localhost" only.
    with pytest.raises(SourceError) as exc_info:
        make_client(host="127.0.0.1").test_connection()
    assert_error(exc_info, PermanentSourceError, "tls_untrusted", "not valid for the host name '127.0.0.1'")


def test_a_certificate_for_another_host_name_is_rejected(dovecot: Any, make_client: Callable[..., ImapClient]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    dovecot.ca.issue_cert("mail.example.test").configure_cert(context)
    with FakeImapServer(tls_context=context) as fake, pytest.raises(SourceError) as exc_info:
        make_client(port=fake.port).test_connection()
    assert_error(exc_info, PermanentSourceError, "tls_untrusted", "not valid for the host name 'localhost'")


def test_nothing_listening_is_unreachable(make_client: Callable[..., ImapClient]) -> None:
    with pytest.raises(SourceError) as exc_info:
        make_client(port=free_port()).test_connection()
    assert_error(exc_info, TransientSourceError, "unreachable", "refused the connection")


def test_a_server_that_never_answers_times_out(make_client: Callable[..., ImapClient]) -> None:
    with FakeImapServer(silent=True) as fake, pytest.raises(SourceError) as exc_info:
        make_client(security="starttls", port=fake.port, timeout=0.5).test_connection()
    assert_error(exc_info, TransientSourceError, "unreachable", "did not answer within 0.5")


def test_a_server_without_starttls_is_refused(make_client: Callable[..., ImapClient]) -> None:
    with FakeImapServer("IMAP4rev1 AUTH=PLAIN") as fake, pytest.raises(SourceError) as exc_info:
        make_client(security="starttls", port=fake.port).test_connection()
    assert_error(exc_info, PermanentSourceError, "starttls_refused", "does not offer STARTTLS")
    # No credentials went over the unencrypted line.
    assert not [line for line in fake.received if b"LOGIN" in line.upper()]


def test_implicit_tls_on_a_plain_port_says_to_check_the_port(
    dovecot: Any, make_client: Callable[..., ImapClient]
) -> None:
    with pytest.raises(SourceError) as exc_info:
        make_client(port=dovecot.port).test_connection()
    assert_error(exc_info, PermanentSourceError, "tls_failed", "port 993")


def test_a_missing_folder_is_reported(make_client: Callable[..., ImapClient]) -> None:
    with pytest.raises(SourceError) as exc_info:
        list(make_client().sync_folder("No such folder", None, Ledger().known))
    assert_error(exc_info, PermanentSourceError, "folder_not_found", "'No such folder'")


# ------------------------------------------------------------------ folders


def test_folder_names_are_decoded_and_quoted(imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]) -> None:
    imap_mailbox.append("Entwürfe", mail("draft"))
    imap_mailbox.create_folder('Kunden "A&B"')
    imap_mailbox.create_folder("Parent.Child")

    client = make_client()
    folders = {f.name: f.total for f in client.list_folders()}

    # "Parent" exists only as a level of the hierarchy (\NonExistent): not selectable.
    assert folders == {"INBOX": 0, "Entwürfe": 1, 'Kunden "A&B"': 0, "Parent.Child": 0}
    assert uids_of(Ledger().run(client, "Entwürfe")) == [1]
    assert Ledger().run(client, 'Kunden "A&B"')[0].messages == []


# ------------------------------------------------------------------ sync


def test_first_sync_yields_every_mail_byte_for_byte(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    when = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    raws = [mail(f"Mail {i}") for i in range(3)]
    uids = imap_mailbox.append_many("INBOX", raws, internal_date=when)

    batches = Ledger().run(make_client())

    assert [(m.location, m.raw, m.received_at) for b in batches for m in b.messages] == [
        (str(uid), raw, when) for uid, raw in zip(uids, raws, strict=True)
    ]
    final = batches[-1]
    assert final.epoch == str(imap_mailbox.uidvalidity()) and not final.resync
    assert final.total == 3
    assert final.cursor["last_uid"] == uids[-1] and final.cursor["uidnext"] == uids[-1] + 1


def test_incremental_sync_yields_only_new_mail(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient], imap_commands: list[tuple[str, ...]]
) -> None:
    imap_mailbox.append_many("INBOX", [mail("a"), mail("b")])
    ledger = Ledger()
    assert uids_of(ledger.run(make_client())) == [1, 2]
    new = imap_mailbox.append_many("INBOX", [mail("c"), mail("d")])
    imap_commands.clear()

    assert uids_of(ledger.run(make_client())) == new == [3, 4]
    # Only the new UIDs were fetched.
    assert [c[2] for c in fetches(imap_commands)] == ["3,4", "3,4"]  # sizes and dates, then bodies


def test_a_rerun_on_an_unchanged_mailbox_fetches_nothing(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient], imap_commands: list[tuple[str, ...]]
) -> None:
    imap_mailbox.append_many("INBOX", [mail("a"), mail("b")])
    ledger = Ledger()
    ledger.run(make_client())
    imap_mailbox.append("Other", mail("elsewhere"))
    with imap_mailbox.connect() as conn:  # a flag change elsewhere is no new mail either
        conn.select("INBOX")
        conn.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    imap_commands.clear()

    assert ledger.run(make_client()) == []
    assert fetches(imap_commands) == []


def test_a_run_without_cursor_downloads_no_known_bodies(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient], imap_commands: list[tuple[str, ...]]
) -> None:
    imap_mailbox.append_many("INBOX", [mail("a"), mail("b")])
    ledger = Ledger()
    ledger.run(make_client())
    ledger.cursor = None  # e.g. the cursor was lost; the ledger was not
    imap_commands.clear()

    batches = ledger.run(make_client())

    assert uids_of(batches) == [] and body_fetches(imap_commands) == []
    assert batches[-1].cursor["last_uid"] == 2


def test_a_bulk_loaded_folder_is_archived_in_order_and_byte_for_byte(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    raws = [mail(f"bulk {i}", size=2_000) for i in range(1200)]
    dates = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(1200)]
    imap_mailbox.import_many("Projekte.Ä", raws, internal_dates=dates, seen=True)

    batches = Ledger().run(make_client(), "Projekte.Ä")

    assert len(batches) == 3  # batch_size 500
    assert [m.raw for b in batches for m in b.messages] == raws
    assert [m.received_at for b in batches for m in b.messages] == dates
    assert set().union(*imap_mailbox.flags("Projekte.Ä").values()) == {"\\Seen"}


def test_batches_are_bounded_and_each_cursor_covers_only_what_came_so_far(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    imap_mailbox.append_many("INBOX", [mail(f"m{i}") for i in range(5)])

    batches = Ledger().run(make_client(batch_size=2))

    assert [uids_of([b]) for b in batches] == [[1, 2], [3, 4], [5]]
    assert [b.cursor["last_uid"] for b in batches] == [2, 4, 5]
    # Only the last cursor claims the folder was listed to the end.
    assert [b.cursor["uidnext"] for b in batches] == [None, None, 6]


def test_batches_are_bounded_by_bytes_and_a_huge_mail_travels_alone(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    raws = [
        mail("s1", size=30_000),
        mail("s2", size=30_000),
        mail("huge", size=300_000),
        mail("s3", size=30_000),
        mail("s4", size=30_000),
        mail("s5", size=30_000),
    ]
    imap_mailbox.append_many("INBOX", raws)

    batches = Ledger().run(make_client(batch_bytes=70_000, max_message_bytes=200_000))

    assert [uids_of([b]) for b in batches] == [[1, 2], [3], [4, 5], [6]]
    assert [m.raw for b in batches for m in b.messages] == raws  # the huge one is not dropped


def test_an_interrupted_run_resumes_without_losing_or_repeating_mail(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    imap_mailbox.append_many("INBOX", [mail(f"m{i}") for i in range(5)])
    ledger = Ledger()
    for batch in make_client(batch_size=2).sync_folder("INBOX", None, ledger.known):
        ledger.commit(batch)
        break  # the worker died after committing the first batch
    imap_mailbox.append("INBOX", mail("late"))

    rest = ledger.run(make_client(batch_size=2))

    assert uids_of(rest) == [3, 4, 5, 6]
    assert sorted(int(uid) for _e, uid, _r in ledger.messages) == [1, 2, 3, 4, 5, 6]


def test_a_uidvalidity_change_resyncs_everything(imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]) -> None:
    imap_mailbox.append_many("INBOX", [mail("a"), mail("b"), mail("c")])
    ledger = Ledger()
    ledger.run(make_client())
    new_epoch = imap_mailbox.change_uidvalidity("INBOX")

    batches = ledger.run(make_client(batch_size=2))

    assert len(batches) == 2 and all(b.resync and b.epoch == str(new_epoch) for b in batches)
    assert uids_of(batches) == [1, 2, 3]
    assert batches[-1].cursor["uidvalidity"] == new_epoch
    assert ledger.run(make_client()) == []  # and then it is settled


def test_an_interrupted_resync_goes_on_as_a_resync(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    imap_mailbox.append_many("INBOX", [mail("a"), mail("b"), mail("c")])
    ledger = Ledger()
    ledger.run(make_client())
    imap_mailbox.change_uidvalidity("INBOX")
    for batch in make_client(batch_size=2).sync_folder("INBOX", ledger.cursor, ledger.known):
        ledger.commit(batch)
        break

    rest = ledger.run(make_client(batch_size=2))

    assert uids_of(rest) == [3] and all(b.resync for b in rest)
    assert "resyncing" not in rest[-1].cursor


def test_sync_leaves_seen_flags_untouched(imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]) -> None:
    imap_mailbox.append("INBOX", mail("unread"))
    imap_mailbox.append("INBOX", mail("read"), flags="\\Seen")
    before = imap_mailbox.flags()

    client = make_client()
    Ledger().run(client)
    client.test_connection()

    assert imap_mailbox.flags() == before == {1: set(), 2: {"\\Seen"}}


def test_minimum_age_holds_young_mail_back_until_it_is_old_enough(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient], imap_commands: list[tuple[str, ...]]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    imap_mailbox.append("INBOX", mail("old"), internal_date=now - timedelta(days=10))
    imap_mailbox.append("INBOX", mail("young"), internal_date=now - timedelta(days=1))
    imap_mailbox.append("INBOX", mail("old, appended later"), internal_date=now - timedelta(days=30))
    ledger = Ledger()

    assert uids_of(ledger.run(make_client(), min_age_days=5)) == [1, 3]
    assert ledger.cursor is not None and ledger.cursor["last_uid"] == 1  # not past the young one

    imap_commands.clear()  # while the young mail is still young: no work at all
    assert ledger.run(make_client(), min_age_days=5) == []
    assert fetches(imap_commands) == []

    # Four days later (what a 1-day minimum age sees now): it is archived, once.
    later = ledger.run(make_client(), min_age_days=0)
    assert uids_of(later) == [2] and len(body_fetches(imap_commands)) == 1
    assert ledger.cursor["last_uid"] == 3 and ledger.cursor["held_since"] is None


def test_a_connection_cut_mid_fetch_is_transient_and_the_rerun_completes(
    dovecot: Any,
    imap_mailbox: Mailbox,
    make_client: Callable[..., ImapClient],
    tcp_proxy_factory: Callable[..., TcpProxy],
) -> None:
    raws = [mail(f"big {i}", size=200_000) for i in range(4)]
    imap_mailbox.append_many("INBOX", raws)
    proxy = tcp_proxy_factory("127.0.0.1", dovecot.tls_port, cut_after_server_bytes=300_000)
    ledger = Ledger()

    with pytest.raises(SourceError) as exc_info:
        ledger.run(make_client(port=proxy.port, batch_bytes=250_000))

    assert_error(exc_info, TransientSourceError, "connection_lost", "connection", password=imap_mailbox.user.password)
    assert proxy.cuts == 1 and uids_of_ledger(ledger) == [1]
    assert uids_of(ledger.run(make_client(batch_bytes=250_000))) == [2, 3, 4]
    assert uids_of_ledger(ledger) == [1, 2, 3, 4]
    assert [raw for _e, _u, raw in ledger.messages] == raws


def uids_of_ledger(ledger: Ledger) -> list[int]:
    return [int(uid) for _epoch, uid, _raw in ledger.messages]


# ------------------------------------------------------------------ after archiving


def test_move_and_delete_act_on_exactly_the_given_mails(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    raws = [mail("move me"), mail("delete me"), mail("keep me")]
    imap_mailbox.append_many("INBOX", raws)
    imap_mailbox.create_folder("Archived")
    client = make_client()
    ledger = Ledger()
    ledger.run(client)
    client.check_action_supported("move")
    client.check_action_supported("delete")

    client.move("INBOX", ["1"], "Archived")
    client.delete("INBOX", ["2"], epoch=str(imap_mailbox.uidvalidity()))

    assert imap_mailbox.uids("INBOX") == [3]
    assert imap_mailbox.uids("Archived") == [1]
    moved = Ledger().run(client, "Archived")
    assert [m.raw for b in moved for m in b.messages] == [raws[0]]


def test_move_to_a_missing_folder_is_reported(imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]) -> None:
    imap_mailbox.append("INBOX", mail("a"))
    with pytest.raises(SourceError) as exc_info:
        make_client().move("INBOX", ["1"], "Nowhere")
    assert_error(exc_info, PermanentSourceError, "folder_not_found", "'Nowhere'")
    assert imap_mailbox.uids("INBOX") == [1]


def test_move_and_delete_are_refused_on_mails_of_another_uidvalidity(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient]
) -> None:
    imap_mailbox.append("INBOX", mail("a"))
    client = make_client()
    Ledger().run(client)
    imap_mailbox.change_uidvalidity("INBOX")

    with pytest.raises(SourceError) as exc_info:
        client.delete("INBOX", ["1"])  # the client remembers the epoch it synced
    assert_error(exc_info, TransientSourceError, "uidvalidity_changed")
    with pytest.raises(SourceError):
        make_client().move("INBOX", ["1"], "INBOX", epoch="1")
    assert imap_mailbox.uids("INBOX") == [1]


def test_servers_without_move_or_uidplus_are_refused_up_front(
    imap_mailbox_factory: Callable[..., Mailbox], make_client: Callable[..., ImapClient]
) -> None:
    mailbox = imap_mailbox_factory(capabilities="IMAP4rev1 LITERAL+ IDLE")
    mailbox.append("INBOX", mail("a"))
    client = make_client(mailbox)
    client.check_action_supported("keep")
    # Without LIST-STATUS the counts come from one STATUS per folder.
    assert [(f.name, f.total) for f in client.list_folders()] == [("INBOX", 1)]

    with pytest.raises(SourceError) as exc_info:
        client.check_action_supported("move")
    assert_error(exc_info, PermanentSourceError, "move_unsupported", "does not support MOVE", "choose 'keep'")
    with pytest.raises(SourceError) as exc_info:
        client.delete("INBOX", ["1"])
    assert_error(exc_info, PermanentSourceError, "delete_unsupported", "choose 'keep'")
    assert mailbox.uids("INBOX") == [1]
    assert uids_of(Ledger().run(client)) == [1]  # archiving itself works without them
