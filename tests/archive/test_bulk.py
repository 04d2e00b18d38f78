"""``archive.bulk.create`` writes the rows ``QuerySet.bulk_create`` would:
the same values read back, keys returned, times stamped, conflicts ignored."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError

from archive import bulk
from archive.models import Document, DocumentFile, DocumentKind, FileRole

pytestmark = pytest.mark.django_db

AWKWARD = "quote ' double \" backslash \\ percent %s %(x)s NUL-free ünïcödé 𝄞 \n\t"


def _rows(model, pks):
    fields = [f.attname for f in model._meta.concrete_fields if f.attname not in {"id", "created", "modified"}]
    return [tuple(r) for r in model.objects.filter(pk__in=pks).order_by("pk").values_list(*fields)]


def _documents(group):
    when = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.UTC)
    return [
        Document(kind=DocumentKind.MAIL, owner_group=group, values={"subject": AWKWARD, "n": 1.5}, title=AWKWARD),
        Document(owner_group=group, values={}, date=when, notes="", parse_error="x" * 3000),
        Document(owner_group_id=group.pk, values={"list": [1, None, True], "nested": {"b": 2, "a": "é"}}),
    ]


def test_the_rows_are_what_bulk_create_writes(group_a):
    ours = bulk.create(_documents(group_a))
    theirs = Document.objects.bulk_create(_documents(group_a))
    assert all(d.pk is not None and not d._state.adding for d in ours)
    assert len({d.pk for d in ours + theirs}) == 6
    assert _rows(Document, [d.pk for d in ours]) == _rows(Document, [d.pk for d in theirs])
    assert all(d.created is not None and d.modified is not None for d in ours)  # auto_now(_add) stamped
    stored = Document.objects.get(pk=ours[0].pk)
    assert (stored.title, stored.values["subject"], stored.created) == (AWKWARD, AWKWARD, ours[0].created)


def test_related_rows_take_the_keys_just_returned(group_a):
    (document,) = bulk.create([Document(owner_group=group_a, values={})])
    files = bulk.create(
        [DocumentFile(document=document, role=FileRole.ORIGINAL, name=AWKWARD, sha256="a" * 64, size=2**40)]
    )
    assert DocumentFile.objects.get(pk=files[0].pk).document_id == document.pk
    assert DocumentFile.objects.get(pk=files[0].pk).size == 2**40


def test_conflicts_are_ignored_only_when_asked(group_a):
    from archive.models import SearchEntry

    (document,) = bulk.create([Document(owner_group=group_a, values={})])
    bulk.create([SearchEntry(document_id=document.pk, text="first")])
    bulk.create([SearchEntry(document_id=document.pk, text="second")], ignore_conflicts=True)
    assert SearchEntry.objects.get(document_id=document.pk).text == "first"
    with pytest.raises(IntegrityError):
        bulk.create([SearchEntry(document_id=document.pk, text="third")])


def test_one_model_per_call(group_a):
    with pytest.raises(TypeError, match="one model per call"):
        bulk.create([Document(owner_group=group_a, values={}), DocumentFile()])
    assert bulk.create([]) == []
