"""A deterministic, realistic mailbox for benchmarks.

The mix (by count): plain text, text+HTML alternatives, HTML newsletters with
remote images, mails with one to three attachments, mails with inline images,
and a few large ones (1–5 MB attachments). Headers look like real delivered
mail: several Received lines, DKIM, RFC 2047 encoded names and subjects, some
RFC 2231 file names. The median size is about 20 KB. Built from byte templates,
not with ``email.message`` (fast: ~20,000 mails in a few seconds), and the
same seed always gives the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import quopri
import random
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime

# (folder, share of the mails); "." is Dovecot's hierarchy separator for maildir.
FOLDERS = [("INBOX", 0.40), ("Sent", 0.20), ("Archive.2023", 0.15), ("Archive.2024", 0.15), ("Projects.Alpha", 0.10)]
# (kind, share of the mails)
KINDS = [
    ("plain", 0.38),
    ("alternative", 0.25),
    ("newsletter", 0.10),
    ("attachment", 0.20),
    ("inline", 0.067),
    ("large", 0.003),
]
COPY_SHARE = 0.01  # the same message filed in a second folder (dedup by content)

_SYLLABLES = (
    "an",
    "ber",
    "chi",
    "dor",
    "el",
    "fa",
    "gen",
    "hal",
    "in",
    "jo",
    "ka",
    "lin",
    "mo",
    "nor",
    "ost",
    "pa",
    "que",
    "ri",
    "sta",
    "ter",
    "um",
    "ver",
    "wel",
    "xen",
    "yo",
    "zu",
)
_REAL_WORDS = (
    "Rechnung",
    "Offerte",
    "Lieferung",
    "Vertrag",
    "Sitzung",
    "Protokoll",
    "Müller",
    "Zürich",
    "Grüsse",
    "Bestätigung",
    "déjà",
    "réunion",
    "facture",
    "meeting",
    "invoice",
    "project",
    "deadline",
    "budget",
    "review",
    "Änderung",
    "Übersicht",
)
_FIRST = (
    "Anna",
    "Beat",
    "Claudia",
    "Daniel",
    "Eva",
    "Fritz",
    "Gabriela",
    "Hans",
    "Irène",
    "Jürg",
    "Käthi",
    "Luca",
    "Marie",
    "Noé",
    "Olivia",
    "Peter",
    "Renée",
    "Stefan",
    "Ursula",
    "Zoë",
)
_LAST = (
    "Müller",
    "Meier",
    "Schmid",
    "Keller",
    "Weber",
    "Huber",
    "Schneider",
    "Meyer",
    "Steiner",
    "Fischer",
    "Gerber",
    "Brunner",
    "Baumann",
    "Frei",
    "Zimmermann",
    "Moser",
    "Favre",
    "Rossi",
)
_DOMAINS = ("example.ch", "example.com", "kunde.example.de", "partner.example.org", "mail.example.net")
_ATTACHMENTS = (
    ("application/pdf", "pdf"),
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    ("application/zip", "zip"),
    ("text/csv", "csv"),
)


@dataclasses.dataclass
class GeneratedMail:
    folder: str
    raw: bytes
    internal_date: datetime


class MailGenerator:
    def __init__(self, seed: int = 20240601) -> None:
        self.rng = random.Random(seed)
        words = [self._word() for _ in range(3000)] + list(_REAL_WORDS) * 20
        # One corpus of sentences; bodies are slices of it (fast, still varied).
        sentences = []
        for _ in range(40000):
            n = self.rng.randint(5, 18)
            sentence = " ".join(self.rng.choices(words, k=n))
            sentences.append(sentence[:1].upper() + sentence[1:] + self.rng.choice(".!?."))
        self.corpus = " ".join(sentences)
        # The corpus wrapped at ~72 columns once, with a blank line now and then
        # (paragraphs), as mail clients send text; bodies are runs of these lines.
        self.lines: list[str] = []
        line: list[str] = []
        length = 0
        for word in self.corpus.split(" "):
            if length + len(word) > 72:
                self.lines.append(" ".join(line))
                line, length = [], 0
                if self.rng.random() < 0.12:
                    self.lines.append("")
            line.append(word)
            length += len(word) + 1
        self.lines.append(" ".join(line))
        self.serial = 0

    # ---------------------------------------------------------------- pieces

    def _word(self) -> str:
        return "".join(self.rng.choice(_SYLLABLES) for _ in range(self.rng.randint(1, 4)))

    def _text(self, size: int) -> str:
        """About ``size`` characters of wrapped text."""
        count = max(1, size // 62)  # ~62 characters per line on average
        start = self.rng.randrange(0, len(self.lines) - count - 1)
        return "\n".join(self.lines[start : start + count])

    def _person(self) -> tuple[str, str]:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        addr = f"{first.lower()}.{last.lower()}@{self.rng.choice(_DOMAINS)}"
        addr = addr.encode("ascii", "ignore").decode()  # umlauts out of the address
        return f"{first} {last}", addr

    def _address(self) -> str:
        name, addr = self._person()
        if not name.isascii():
            return f"{Header(name, 'utf-8').encode()} <{addr}>"
        return f'"{name}" <{addr}>' if self.rng.random() < 0.3 else f"{name} <{addr}>"

    def _subject(self) -> str:
        start = self.rng.randrange(0, len(self.corpus) - 200)
        words = self.corpus[start : start + 200].split(" ")[1:]
        subject = " ".join(words[: self.rng.randint(3, 9)]).strip(".!?")
        subject = self.rng.choice(("", "", "", "Re: ", "AW: ", "Fwd: ", "WG: ")) + subject
        if not subject.isascii():
            return Header(subject, "utf-8").encode()
        return subject

    @staticmethod
    def _b64(data: bytes) -> str:
        encoded = base64.b64encode(data).decode("ascii")
        return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"

    def _text_part(self, text: str, subtype: str = "plain") -> str:
        if text.isascii() or self.rng.random() < 0.4:
            encoding = "8bit" if not text.isascii() else "7bit"
            body = text
        else:
            encoding = "quoted-printable"
            body = quopri.encodestring(text.encode("utf-8")).decode("ascii")
        return f"Content-Type: text/{subtype}; charset=utf-8\nContent-Transfer-Encoding: {encoding}\n\n{body}\n"

    def _html(self, text: str, newsletter: bool) -> str:
        paragraphs = "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))
        images = ""
        if newsletter:
            images = "".join(
                f'<img src="https://news.example.com/img/{self.rng.randrange(10**6)}.png" width="600" alt="banner">\n'
                for _ in range(self.rng.randint(2, 8))
            )
            images += '<table width="100%" style="border:0"><tr><td style="padding:8px">' * 3
            images += "</td></tr></table>" * 3
        return (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
            "body{font-family:Arial,sans-serif;font-size:14px} p{margin:0 0 1em}</style>"
            f"</head><body>{images}{paragraphs}</body></html>"
        )

    def _attachment(self, size: int, inline_cid: str = "") -> str:
        ctype, ext = self.rng.choice(_ATTACHMENTS[:3] if inline_cid else _ATTACHMENTS)
        if inline_cid:
            ctype, ext = "image/png", "png"
        stem = self.rng.choice(("Rechnung", "Offerte", "scan", "Protokoll_Sitzung", "Übersicht", "report", "IMG"))
        name = f"{stem}_{self.rng.randrange(10000):04d}.{ext}"
        if name.isascii():
            disposition = f'filename="{name}"'
        else:  # RFC 2231, as current clients send non-ASCII names
            quoted = "".join(
                c if c.isascii() and c.isalnum() or c in "._-" else "".join(f"%{b:02X}" for b in c.encode())
                for c in name
            )
            disposition = f"filename*=utf-8''{quoted}"
        kind = "inline" if inline_cid else "attachment"
        cid = f"Content-ID: <{inline_cid}>\n" if inline_cid else ""
        return (
            f'Content-Type: {ctype}; name="{name.encode("ascii", "replace").decode()}"\n'
            f"Content-Disposition: {kind}; {disposition}\n{cid}"
            f"Content-Transfer-Encoding: base64\n\n{self._b64(self.rng.randbytes(size))}"
        )

    @staticmethod
    def _multipart(subtype: str, boundary: str, parts: list[str]) -> str:
        body = "".join(f"--{boundary}\n{part}\n" for part in parts)
        return (
            f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n\n'
            f"This is a multi-part message in MIME format.\n\n{body}--{boundary}--\n"
        )

    def _headers(self, date: datetime) -> str:
        self.serial += 1
        sender, recipient = self._address(), self._address()
        lines = []
        hop = date
        for i in range(self.rng.randint(2, 5)):
            hop -= timedelta(seconds=self.rng.randint(1, 30))
            lines.append(
                f"Received: from mx{i}.{self.rng.choice(_DOMAINS)} (mx{i}.{self.rng.choice(_DOMAINS)} "
                f"[192.0.2.{self.rng.randrange(1, 255)}])\n\tby mail.example.ch (Postfix) with ESMTPS "
                f"id {self.rng.randrange(16**10):010X}\n\tfor <archive@example.ch>; "
                f"{format_datetime(hop)}"
            )
        if self.rng.random() < 0.6:
            signature = self._b64(self.rng.randbytes(180)).replace("\n", "\n\t ")
            lines.append(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;\n"
                f"\ts=mail; t={int(date.timestamp())}; bh=abc=;\n\th=From:To:Subject:Date;"
                f"\n\tb={signature.strip()}"
            )
        lines += [f"From: {sender}", f"To: {recipient}"]
        if self.rng.random() < 0.35:
            lines.append("Cc: " + ", ".join(self._address() for _ in range(self.rng.randint(1, 4))))
        lines += [
            f"Subject: {self._subject()}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: <{self.serial}.{self.rng.randrange(16**12):012x}@example.ch>",
            "MIME-Version: 1.0",
        ]
        if self.rng.random() < 0.3:
            lines.append(f"In-Reply-To: <{self.rng.randrange(16**12):012x}@example.com>")
        lines.append(f"X-Mailer: {self.rng.choice(('Thunderbird 115.3', 'Outlook 16.0', 'Apple Mail'))}")
        return "\n".join(lines) + "\n"

    # ---------------------------------------------------------------- mails

    def mail(self, kind: str, date: datetime) -> bytes:
        rng = self.rng
        boundary = f"----=_Part_{rng.randrange(16**16):016x}"
        if kind == "plain":
            body = self._text_part(self._text(int(rng.lognormvariate(9.1, 0.7))))  # ~5 KB median
        elif kind in ("alternative", "newsletter"):
            text = self._text(int(rng.lognormvariate(9.2, 0.6)))
            html = self._html(text, newsletter=kind == "newsletter")
            body = self._multipart("alternative", boundary, [self._text_part(text), self._text_part(html, "html")])
        elif kind == "inline":
            cids = [f"image{i}.{rng.randrange(16**8):08x}@example.ch" for i in range(rng.randint(1, 3))]
            text = self._text(int(rng.lognormvariate(8.3, 0.5)))
            html = self._html(text, newsletter=False) + "".join(f'<img src="cid:{c}">' for c in cids)
            related = self._multipart(
                "related",
                boundary + "_r",
                [self._text_part(html, "html")]
                + [self._attachment(int(rng.lognormvariate(9.8, 0.6)), inline_cid=c) for c in cids],
            )
            body = self._multipart("alternative", boundary, [self._text_part(text), related])
        else:  # attachment, large
            text = self._text(int(rng.lognormvariate(7.8, 0.6)))
            if kind == "large":
                sizes = [rng.randint(1_000_000, 3_700_000)]  # base64: up to ~5 MB on the wire
            else:
                sizes = [int(rng.lognormvariate(10.4, 1.0)) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
                sizes = [min(s, 900_000) for s in sizes]
            body = self._multipart("mixed", boundary, [self._text_part(text)] + [self._attachment(s) for s in sizes])
        mail = self._headers(date) + body
        # Delivered mail has CRLF line ends on the wire; Dovecot stores LF and
        # sends CRLF, so LF here is what a maildir holds.
        return mail.encode("utf-8")

    def mailbox(self, count: int) -> list[GeneratedMail]:
        """``count`` mails spread over FOLDERS, oldest first within a folder."""
        rng = self.rng
        start = datetime(2022, 1, 1, tzinfo=UTC)
        span = (datetime(2025, 6, 1, tzinfo=UTC) - start).total_seconds()
        folders = rng.choices([f for f, _ in FOLDERS], weights=[w for _, w in FOLDERS], k=count)
        kinds = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS], k=count)
        dates = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(count))
        mails: list[GeneratedMail] = []
        for i in range(count):
            if mails and rng.random() < COPY_SHARE:
                original = rng.choice(mails)
                others = [f for f, _ in FOLDERS if f != original.folder]
                mails.append(GeneratedMail(rng.choice(others), original.raw, original.internal_date))
                continue
            date = dates[i].replace(microsecond=0)
            mails.append(GeneratedMail(folders[i], self.mail(kinds[i], date), date))
        return mails
