"""Trusted timestamps of both chains' heads against a real RFC 3161 TSA
(OpenSSL behind loopback HTTP, tests/fakes/tsa)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.utils import timezone

from archive.integrity import anchoring, chain, tsa
from archive.integrity.audit import AuditAction, log
from archive.integrity.models import Anchor, LedgerEntry
from tests.fakes.tsa import FakeTsa

pytestmark = pytest.mark.django_db


def test_the_heads_of_both_chains_are_timestamped_and_verified(tsa_up, make_document, alice):
    doc = make_document(values={"title": "Invoice"})
    log(AuditAction.DOCUMENT_VIEW, user=alice, document=doc.pk)
    head = LedgerEntry.objects.order_by("-seq").first()
    answered = tsa_up.requests

    anchor = anchoring.anchor_heads()

    assert tsa_up.requests == answered + 1
    assert (anchor.ledger_seq, anchor.ledger_hash) == (head.seq, head.entry_hash)
    assert anchor.audit_seq == 1 and anchor.tsa_url == tsa_up.url
    message = chain.anchor_message(anchor.ledger_seq, anchor.ledger_hash, anchor.audit_seq, anchor.audit_hash)
    assert anchor.digest == hashlib.sha256(message).hexdigest()
    stored = Anchor.objects.get(pk=anchor.pk)
    response = tsa.verify_response(bytes(stored.token), message)
    assert response.tst_info.message_imprint.message.hex() == anchor.digest
    assert abs(stored.gen_time - timezone.now()) < dt.timedelta(minutes=5)


def test_a_token_covers_only_its_own_heads(tsa_up, make_document):
    make_document()
    anchor = anchoring.anchor_heads()
    other = chain.anchor_message(anchor.ledger_seq + 1, anchor.ledger_hash, anchor.audit_seq, anchor.audit_hash)
    with pytest.raises(tsa.TsaInvalid, match="Mismatch between messages"):
        tsa.verify_response(bytes(anchor.token), other)


def test_a_reply_for_another_request_is_refused_by_its_nonce(tsa_up):
    message = b"heads"
    request_nonce = 12345
    stamp = tsa.timestamp(message)
    with pytest.raises(tsa.TsaInvalid, match="Nonce mismatch"):
        tsa.verify_response(stamp.response, message, nonce=request_nonce)


def test_a_token_signed_by_an_untrusted_authority_is_not_stored(tsa_up, settings, tmp_path):
    stranger = FakeTsa(tmp_path / "stranger", name="Stranger TSA")
    settings.TSA_CA_FILE = stranger.ca_file  # trust another CA than the one that signs
    settings.TSA_CERT_FILE = ""
    with pytest.raises(tsa.TsaInvalid, match="certificates"):
        anchoring.anchor_heads()
    assert not Anchor.objects.exists()


def test_an_unreachable_tsa_does_not_block_archiving(tsa_up, make_document):
    tsa_up.down = True
    with pytest.raises(tsa.TsaUnavailable, match="503"):
        anchoring.anchor_heads()
    doc = make_document(values={"title": "archived meanwhile"})
    assert LedgerEntry.objects.filter(document=doc.pk).exists()
    assert not Anchor.objects.exists()
    tsa_up.down = False
    assert anchoring.anchor_heads().ledger_seq == LedgerEntry.objects.count()


def test_retries_back_off_up_to_half_the_interval(settings):
    settings.ANCHOR_INTERVAL = 3600
    delays = [anchoring.retry_delay(attempt) for attempt in range(10)]
    assert delays[0] < delays[1] < delays[2]
    # Jitter takes up to a fifth off; never beyond the cap.
    assert max(delays) <= 1800 and 0.8 * 1800 <= delays[-1] <= 1800


def test_the_newest_anchors_age_and_the_alarm_after_two_intervals(tsa_up, settings):
    settings.ANCHOR_INTERVAL = 3600
    assert anchoring.anchor_age().overdue  # configured, and nothing timestamped yet
    anchor = anchoring.anchor_heads()
    fresh = anchoring.anchor_age(now=anchor.created + dt.timedelta(hours=1))
    assert fresh.newest == anchor and fresh.age == dt.timedelta(hours=1) and not fresh.overdue
    assert anchoring.anchor_age(now=anchor.created + dt.timedelta(hours=2, seconds=1)).overdue
