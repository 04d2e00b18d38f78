"""The address fast path of ``parse_headers`` answers exactly as ``getaddresses``
would, and the search entries written at archiving match a reindex (issue 18)."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from hypothesis import given, settings
from hypothesis import strategies as st

from archive.mail import _addresses, _simple_addresses, parse_headers

ATOM = st.text(alphabet="abcXYZ09'_-=?!#~", min_size=1, max_size=6) | st.just("=?utf-8?q?J=C3=BCrg_M?=")
QUOTED = st.text(alphabet="abX0 ,.;:<>@()'=?_-", max_size=8).map(lambda t: f'"{t}"')
SPACE = st.sampled_from([" ", "  ", "\t", "\r\n "])
LOCAL = st.lists(st.text(alphabet="abz09+_-!#~", min_size=1, max_size=5), min_size=1, max_size=3).map(".".join)
DOMAIN = st.lists(st.text(alphabet="abz09-", min_size=1, max_size=5), min_size=1, max_size=3).map(".".join)


@st.composite
def simple_address(draw: st.DrawFn) -> str:
    address = f"{draw(LOCAL)}@{draw(DOMAIN)}"
    words = draw(st.lists(ATOM, max_size=3) | QUOTED.map(lambda q: [q]))
    if not words:
        return draw(SPACE) + address if draw(st.booleans()) else address
    return draw(SPACE).join(words) + draw(st.sampled_from(["", " "])) + f"<{address}>"


@settings(max_examples=300, deadline=None)
@given(st.lists(simple_address(), min_size=1, max_size=4).map(", ".join).filter(lambda v: v.count('"') == 0))
def test_simple_values_take_the_fast_path_and_agree_with_getaddresses(value: str) -> None:
    assert _simple_addresses([value]) == getaddresses([value])


@settings(max_examples=300, deadline=None)
@given(simple_address())
def test_one_simple_address_with_any_name_agrees_with_getaddresses(value: str) -> None:
    fast = _simple_addresses([value])
    assert fast == getaddresses([value]) or (fast is None and "," in value)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="abX0 \t\r\n<>@,.;:\"'()=?\\_-+é[]", max_size=40))
def test_any_input_the_fast_path_takes_it_answers_as_getaddresses(value: str) -> None:
    fast = _simple_addresses([value])
    if fast is not None:
        assert fast == getaddresses([value])


def test_common_values_take_the_fast_path() -> None:
    assert _simple_addresses(["Ann Lee <ann@example.org>, bob@example.org"]) == [
        ("Ann Lee", "ann@example.org"),
        ("", "bob@example.org"),
    ]
    assert _simple_addresses(['"Lee, Ann" <ann@example.org>']) is None  # quoted: the parser
    assert _simple_addresses(['"Ann Lee" <ann@example.org>']) == [("Ann Lee", "ann@example.org")]
    # An encoded name is split here and decoded after, as with the parser.
    assert _simple_addresses(["=?utf-8?q?J=C3=BCrg?= <j@example.org>"]) == [("=?utf-8?q?J=C3=BCrg?=", "j@example.org")]
    assert _simple_addresses(["Ann (work) <ann@example.org>"]) is None  # a comment: the parser


def test_hard_values_still_go_through_the_parser() -> None:
    assert _addresses(['"Lee, Ann" <ann@example.org>']) == '"Lee, Ann" <ann@example.org>'
    assert _addresses(["=?utf-8?q?J=C3=BCrg?= <j@example.org>"]) == "Jürg <j@example.org>"
    headers = parse_headers(b"From: Ann Lee <ann@example.org>\r\nTo: b@example.org, C D <c@example.org>\r\n\r\nbody")
    assert headers.from_ == "Ann Lee <ann@example.org>"
    assert headers.to == "b@example.org, C D <c@example.org>"


# What read_headers stands in for (and header_block's reference): the email package's parser.
HEADER_PARSER = BytesHeaderParser(policy=compat32)

# Pieces of header blocks, well-formed and not: names, colons, folding, the
# envelope line, line ends of every kind (a lone CR splits lines too), 8-bit bytes.
HEADER_PIECES = st.sampled_from(
    [
        b"From ",
        b"From: ",
        b"Subject: ",
        b"To:",
        b"Cc: ",
        b"Content-Type: text/plain; charset=",
        b"Message-ID: <a@b>",
        b"Date: Tue, 1 Dec 2026 10:00:00 +0100",
        b"X-Odd",
        b":",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\r\n",
        b"\f",
        b"a",
        b"Alice <alice@example.com>, bob@example.org",
        b"=?utf-8?q?J=C3=BCrg?=",
        b"\xc3\xa9",
        b"\xff",
        b"\x00",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(HEADER_PIECES, max_size=30).map(b"".join))
def test_the_header_reader_reads_as_the_email_parser_does(block: bytes) -> None:
    from archive import mail

    slow = HEADER_PARSER.parsebytes(block)
    fast = mail.read_headers(block)
    assert fast._headers == slow._headers  # type: ignore[attr-defined]
    assert fast.get_unixfrom() == slow.get_unixfrom()
    assert fast.get_content_charset() == slow.get_content_charset()


@settings(max_examples=1500, deadline=None)
@given(st.lists(HEADER_PIECES, max_size=30).map(b"".join), st.sampled_from([b"", b"\n\nBody: text\n", b"\r\n\r\nx"]))
def test_the_header_block_holds_every_header_of_the_mail(head: bytes, rest: bytes) -> None:
    from archive.mail import header_block

    raw = head + rest
    block = header_block(raw)
    assert raw.startswith(block)
    assert HEADER_PARSER.parsebytes(block)._headers == HEADER_PARSER.parsebytes(raw)._headers  # type: ignore[attr-defined]
