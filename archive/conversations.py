"""Conversations: the other mails of a mail's thread, by Message-ID,
In-Reply-To and References (RFC 5322 §3.6.4), among the documents the user
may open.

Nothing is stored for it: the candidates are the mails the thread's ids name
(``ArchivedMail.message_id``, one indexed query) and the mails whose title is
the subject with or without a reply/forward prefix (the title index, one
query); only their header blocks are read, and a candidate belongs to the
thread when its ids and the thread's ids meet. Bounded: ``MAX_CANDIDATES`` a round, three rounds."""

from __future__ import annotations

import dataclasses
import re
from email.parser import BytesHeaderParser
from email.policy import compat32

from django.apps import apps
from django.db.models import Q, QuerySet

from archive import storage
from archive.mail import header_block
from archive.models import Document, DocumentFile, DocumentKind, FileRole

MAX_CANDIDATES = 60
HEAD_BYTES = 64 * 1024  # a header block longer than this is cut (its ids come first or are lost)
_MSGID = re.compile(r"<[^<>\s]{1,500}>")
# "Re:", "AW:", "Fwd: [list]" … as mailers put them before a subject.
_PREFIX = re.compile(r"^\s*((re|aw|wg|fw|fwd|sv|vs|antw|tr|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
REPLY_PREFIXES = ("Re: ", "RE: ", "AW: ", "Aw: ", "Fwd: ", "FW: ", "Fw: ", "WG: ", "TR: ", "SV: ")


@dataclasses.dataclass(frozen=True)
class ThreadIds:
    own: str  # the mail's Message-ID ("" without)
    refs: frozenset[str]  # In-Reply-To and References

    @property
    def all(self) -> frozenset[str]:
        return self.refs | {self.own} if self.own else self.refs


@dataclasses.dataclass(frozen=True)
class ThreadMail:
    document: Document
    subject: str
    sender: str
    is_current: bool


class Conversation(list[ThreadMail]):
    """The thread's mails; ``cut`` when the bounds may have left some out."""

    cut: bool = False


def base_subject(subject: str) -> str:
    """The subject without its reply and forward prefixes."""
    return _PREFIX.sub("", subject).strip()


def thread_ids(raw_head: bytes) -> ThreadIds:
    msg = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw_head))
    own = _MSGID.findall(str(msg.get("Message-ID", "") or ""))
    refs = [
        found
        for name in ("In-Reply-To", "References")
        for value in msg.get_all(name, [])
        for found in _MSGID.findall(str(value))
    ]
    return ThreadIds(own[0] if own else "", frozenset(refs))


def _head_of(original: DocumentFile) -> bytes:
    try:
        with storage.open_blob(original.sha256) as fh:
            return fh.read(HEAD_BYTES)
    except storage.StorageError:
        return b""


def _originals(numbers: set[int]) -> dict[int, DocumentFile]:
    """The current .eml of each document (the highest version)."""
    found: dict[int, DocumentFile] = {}
    for f in DocumentFile.objects.filter(document_id__in=numbers, role=FileRole.ORIGINAL).order_by("version"):
        found[f.document_id] = f
    return found


def _titles(subject: str) -> list[str]:
    """The subject as titles of its replies and forwards: up to two prefixes
    ("Re: Offer", "AW: Re: Offer"), looked up in the title index."""
    one = [p + subject for p in REPLY_PREFIXES]
    return [subject, *one, *(p + t for p in REPLY_PREFIXES for t in one)]


def _candidates(visible: QuerySet[Document], subjects: set[str], ids: set[str], seen: set[int]) -> list[Document]:
    mails = visible.filter(kind=DocumentKind.MAIL).exclude(pk__in=seen)
    titles = sorted({t for subject in subjects if subject for t in _titles(subject)})
    where = Q(title__in=titles) if titles else Q(pk__in=[])
    if ids:
        archived = apps.get_model("mailsources", "ArchivedMail").objects
        where |= Q(pk__in=archived.filter(message_id__in=sorted(ids)).values("document_id"))
    return list(mails.filter(where).order_by("date", "pk")[:MAX_CANDIDATES])


def _join(heads: dict[int, ThreadIds], known: set[str], members: set[int]) -> None:
    """Add every mail whose ids meet the thread's, until none is left (a reply
    to a reply joins once its parent did)."""
    grew = True
    while grew:
        grew = False
        for number, other in heads.items():
            if number not in members and known & other.all:
                members.add(number)
                known |= other.all
                grew = True


def conversation(visible: QuerySet[Document], document: Document) -> Conversation:
    """The thread of a mail, oldest first, the mail itself included; empty when it
    has no other mail the user may see (or is not a mail). ``cut`` when a round
    found ``MAX_CANDIDATES`` candidates or the third round still found some."""
    original = document.original()
    if original is None or (document.kind != DocumentKind.MAIL and not original.name.lower().endswith(".eml")):
        return Conversation()
    ids = thread_ids(_head_of(original))
    known, members = set(ids.all), {document.pk}
    found: dict[int, Document] = {document.pk: document}
    heads: dict[int, ThreadIds] = {}
    asked: set[str] = set()
    cut = False
    for _round in range(3):  # mails found name further mails: by their ids and their subjects
        subjects = {base_subject(found[n].title) for n in members} - asked
        asked |= subjects
        new = _candidates(visible, subjects, known, set(found))
        if not new:
            break
        cut = cut or len(new) == MAX_CANDIDATES
        found.update((d.pk, d) for d in new)
        originals = _originals({d.pk for d in new})
        heads.update((d.pk, thread_ids(_head_of(originals[d.pk]))) for d in new if d.pk in originals)
        _join(heads, known, members)
    else:
        cut = True  # three rounds, each finding more: there may be more still
    if len(members) == 1:
        return Conversation()
    chosen = [d for n, d in found.items() if n in members]
    chosen.sort(key=lambda d: (d.date is None, d.date, d.pk))
    thread = Conversation(ThreadMail(d, d.title, str(d.values.get("from", "")), d.pk == document.pk) for d in chosen)
    thread.cut = cut
    return thread
