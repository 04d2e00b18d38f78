"""MBOX per mailbox parses back with the standard ``mailbox`` module byte for
byte (mboxrd unquoted); the Z3 ``index.xml`` is valid against the GDPdU DTD
and its CSV tables have exactly the declared columns."""

from __future__ import annotations

import csv
import mailbox
import re
from pathlib import Path

import pytest
from lxml import etree

from archive.exports.mbox import NO_MAILBOX
from tests.archive.mail_samples import archive_mail
from tests.exports.helpers import build, imap_source, mail_in_mailbox, record_archived, unpacked

pytestmark = pytest.mark.django_db

TRICKY = [
    # A body line starting with "From " and one already quoted: mboxrd keeps both apart.
    b"From: a@example.com\r\nSubject: one\r\n\r\nFrom the desk of A.\r\n>From quoted\r\n>>From twice\r\n",
    b"From: b@example.com\nSubject: two, LF only\n\nplain body\n\nFrom here on\n",
    b"From: c@example.com\r\nSubject: three\r\n\r\nends with an empty line\r\n\r\n",
]


def unquote_mboxrd(data: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


def test_each_mailbox_becomes_an_mbox_that_parses_back_byte_identical(group_a, admin_user, tmp_path):
    source = imap_source(group_a)
    other = imap_source(group_a, name="other", username="bob")
    mails = [mail_in_mailbox(raw, group_a, source, uid=str(i)) for i, raw in enumerate(TRICKY, start=1)]
    bobs = mail_in_mailbox(b"From: d@example.com\r\nSubject: bob's\r\n\r\nhi\r\n", group_a, other, uid="1")
    uploaded = archive_mail(b"From: e@example.com\r\nSubject: uploaded\r\n\r\nby hand\r\n", group_a)
    record_archived(uploaded)
    root = unpacked(build(admin_user), tmp_path / "x")
    expected = {
        "alice@mail.example.com": [TRICKY[0], TRICKY[1], TRICKY[2]],
        "bob@mail.example.com": [b"From: d@example.com\r\nSubject: bob's\r\n\r\nhi\r\n"],
        NO_MAILBOX: [b"From: e@example.com\r\nSubject: uploaded\r\n\r\nby hand\r\n"],
    }
    assert sorted(p.name for p in (root / "mbox").iterdir()) == sorted(f"{name}.mbox" for name in expected)
    for name, raws in expected.items():
        box = mailbox.mbox(str(root / "mbox" / f"{name}.mbox"), create=False)
        assert [unquote_mboxrd(box.get_bytes(key)) for key in box.keys()] == raws, name
        assert all(m.get_from().startswith("MAILER-DAEMON ") for m in box)  # the separator line
    assert len(mails) == 3 and bobs.pk


def test_without_mbox_there_is_no_mbox_folder(group_a, admin_user, tmp_path):
    mail_in_mailbox(TRICKY[0], group_a, imap_source(group_a))
    root = unpacked(build(admin_user, with_mbox=False, with_z3=False), tmp_path / "x")
    assert not (root / "mbox").exists() and not (root / "z3").exists()


@pytest.fixture
def z3_root(group_a, make_document, admin_user, tmp_path) -> Path:
    from archive.models import FieldDefinition

    FieldDefinition.objects.create(name="amount", label="Amount", type="number")
    FieldDefinition.objects.create(name="due", label="Due", type="date")
    doc = make_document(
        content=b"invoice",
        name="invoice.pdf",
        values={"title": 'Invoice; "A"\nline 2', "amount": 1234.5, "due": "2024-03-01"},
    )
    record_archived(doc)
    mail_in_mailbox(TRICKY[0], group_a, imap_source(group_a), message_id="<m1@example.com>")
    return unpacked(build(admin_user), tmp_path / "x") / "z3"


def test_index_xml_is_valid_against_the_gdpdu_dtd(z3_root):
    dtd = etree.DTD(str(z3_root / "gdpdu-01-09-2004.dtd"))
    tree = etree.parse(str(z3_root / "index.xml"))
    assert dtd.validate(tree), dtd.error_log.filter_from_errors()
    assert tree.docinfo.system_url == "gdpdu-01-09-2004.dtd" and tree.docinfo.encoding == "UTF-8"
    tables = tree.findall("Media/Table")
    assert [t.findtext("URL") for t in tables] == ["documents.csv", "files.csv", "locations.csv"]
    for table in tables:
        assert table.find("UTF8") is not None  # the encoding declared
        assert (table.findtext("DecimalSymbol"), table.findtext("DigitGroupingSymbol")) == (",", ".")
        variable = table.find("VariableLength")
        assert variable.findtext("ColumnDelimiter") == ";"
        assert variable.findtext("RecordDelimiter") == "\r\n"
        assert variable.findtext("TextEncapsulator") == '"'


def test_every_csv_table_has_exactly_the_declared_columns(z3_root):
    tree = etree.parse(str(z3_root / "index.xml"))
    for table in tree.findall("Media/Table"):
        columns = [c for c in table.find("VariableLength") if c.tag in ("VariablePrimaryKey", "VariableColumn")]
        declared = [c.findtext("Name") for c in columns]
        types = [next(t.tag for t in c if t.tag in ("Numeric", "AlphaNumeric", "Date")) for c in columns]
        raw = (z3_root / table.findtext("URL")).read_bytes()
        rows = list(csv.reader(raw.decode("utf-8").splitlines(keepends=True), delimiter=";", quotechar='"'))
        assert rows[0] == declared  # line 1: the names; Range/From 2 skips it
        assert table.findtext("Range/From") == "2"
        assert len(rows) > 1
        for row in rows[1:]:
            assert len(row) == len(declared)
            for value, kind in zip(row, types, strict=True):
                if kind == "Date" and value:
                    assert re.fullmatch(r"\d\d\.\d\d\.\d{4}", value), value
                if kind == "Numeric" and value:
                    assert re.fullmatch(r"-?\d+(,\d+)?", value), value


def test_field_values_are_typed_in_the_documents_table(z3_root):
    raw = (z3_root / "documents.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(raw.splitlines(keepends=True), delimiter=";"))
    invoice = next(r for r in rows if r["field_amount"])
    assert invoice["field_amount"] == "1234,50"
    assert invoice["field_due"] == "01.03.2024"
    assert invoice["field_title"] == 'Invoice; "A"\nline 2'  # quoted, not split
