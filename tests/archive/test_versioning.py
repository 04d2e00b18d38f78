"""Versioning and Field for version key (SPEC §4, issue 5 item 9): with
versioning on, an upload whose version-key value matches an existing document
becomes its next version (1.0 → 1.1 …); older versions stay listed and
downloadable; the document's number and access link stay and open the newest."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from archive import services, storage
from archive.models import ArchiveSettings, Document, FieldDefinition, FieldType, FileRole


def configure(versioning: bool = True, key: str | None = "filename") -> None:
    settings = ArchiveSettings.load()
    settings.versioning = versioning
    settings.version_key_field = FieldDefinition.objects.get(name=key) if key else None
    settings.save()


def upload(group, name: str, content: bytes, values: dict | None = None) -> tuple[Document, bool]:
    return services.document_create_from_upload(
        name=name,
        blob=storage.put_bytes(content),
        content_type=services.guess_content_type(name),
        owner_group=group,
        values=values,
    )


def originals(document: Document) -> list[tuple[str, str, bytes]]:
    return [
        (f.version_label, f.name, storage.read_bytes(f.sha256))
        for f in document.files.filter(role=FileRole.ORIGINAL).order_by("version")
    ]


def test_an_upload_with_a_matching_key_becomes_the_next_version(db, group_a):
    configure()
    first, was_version = upload(group_a, "price-list.pdf", b"v1")
    assert not was_version
    second, was_version = upload(group_a, "price-list.pdf", b"v2")
    third, _ = upload(group_a, "price-list.pdf", b"v3")
    assert was_version and first.pk == second.pk == third.pk
    assert Document.objects.count() == 1
    assert originals(first) == [
        ("1.0", "price-list.pdf", b"v1"),
        ("1.1", "price-list.pdf", b"v2"),
        ("1.2", "price-list.pdf", b"v3"),
    ]
    first.refresh_from_db()
    assert storage.read_bytes(first.original().sha256) == b"v3"


def test_another_key_value_is_another_document(db, group_a):
    configure()
    a, _ = upload(group_a, "a.pdf", b"a")
    b, was_version = upload(group_a, "b.pdf", b"b")
    assert not was_version and a.pk != b.pk


def test_without_versioning_every_upload_is_a_new_document(db, group_a):
    configure(versioning=False)
    a, _ = upload(group_a, "same.pdf", b"1")
    b, was_version = upload(group_a, "same.pdf", b"2")
    assert not was_version and a.pk != b.pk


def test_a_document_of_another_group_is_never_versioned(db, group_a, group_b):
    configure()
    theirs, _ = upload(group_b, "report.pdf", b"legal's")
    mine, was_version = upload(group_a, "report.pdf", b"sales'")
    assert not was_version and mine.pk != theirs.pk
    assert originals(theirs) == [("1.0", "report.pdf", b"legal's")]


def test_a_new_version_keeps_the_fields_users_typed(db, group_a):
    configure()
    document, _ = upload(group_a, "offer.odt", b"1")
    services.document_update_values(document, {"title": "Offer for Müller AG"})
    upload(group_a, "offer.odt", b"2")
    document.refresh_from_db()
    assert document.title == "Offer for Müller AG"


def test_the_key_can_be_any_field_given_with_the_upload(db, group_a):
    FieldDefinition.objects.create(name="docref", label="Reference", type=FieldType.NUMBER)
    configure(key="docref")
    document, _ = upload(group_a, "contract-draft.pdf", b"draft", values={"docref": "0042"})
    # "42" and "0042" are the same number, and the file name may differ.
    again, was_version = upload(group_a, "contract-signed.pdf", b"signed", values={"docref": "42"})
    assert was_version and again.pk == document.pk
    assert [v[:2] for v in originals(document)] == [("1.0", "contract-draft.pdf"), ("1.1", "contract-signed.pdf")]


def test_the_upload_form_takes_the_version_key(client, alice, group_a):
    FieldDefinition.objects.create(name="docref", label="Reference", type=FieldType.TEXT)
    configure(key="docref")
    document, _ = upload(group_a, "plan.pdf", b"plan 1", values={"docref": "P-7"})
    client.force_login(alice)
    form_page = client.get(reverse("archive:upload") + "?version_key=P-7").content.decode()
    assert 'name="version_key"' in form_page and 'value="P-7"' in form_page
    response = client.post(
        reverse("archive:upload"),
        {
            "files": SimpleUploadedFile("plan-revised.pdf", b"plan 2"),
            "owner_group": group_a.pk,
            "version_key": "P-7",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("archive:document", args=[document.pk])
    assert [v[2] for v in originals(document)] == [b"plan 1", b"plan 2"]


def test_the_upload_form_has_no_key_input_when_the_file_name_is_the_key(client, alice):
    configure(key="filename")
    client.force_login(alice)
    assert 'name="version_key"' not in client.get(reverse("archive:upload")).content.decode()


def test_number_and_access_link_stay_and_open_the_newest_version(client, alice, group_a):
    configure()
    document, _ = upload(group_a, "manual.pdf", b"%PDF old")
    old = document.original()
    upload(group_a, "manual.pdf", b"%PDF new")
    new = Document.objects.get(pk=document.pk).original()
    client.force_login(alice)
    response = client.get(f"/perl/avclient/index.pl?target=new&go={document.pk}", follow=True)
    assert response.redirect_chain[-1][0] == reverse("archive:document", args=[document.pk])
    body = response.content.decode()
    viewer = body.split('id="panel-view"', 1)[1].split("</section>", 1)[0]
    assert reverse("archive:file", args=[document.pk, new.pk]) in viewer
    assert reverse("archive:file", args=[document.pk, old.pk]) not in viewer
    assert "version 1.1" in body


def test_older_versions_stay_listed_and_downloadable(client, alice, group_a):
    configure()
    document, _ = upload(group_a, "manual.pdf", b"%PDF old")
    old = document.original()
    upload(group_a, "manual.pdf", b"%PDF new")
    client.force_login(alice)
    body = client.get(reverse("archive:document", args=[document.pk])).content.decode()
    versions = body.split('id="versions"', 1)[1].split("</ul>", 1)[0]
    assert 'data-version="1.1"' in versions and 'data-version="1.0"' in versions
    old_url = reverse("archive:file", args=[document.pk, old.pk]) + "?download=1"
    assert old_url in versions
    response = client.get(old_url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF old"
    assert response["Content-Disposition"].startswith("attachment;")


def test_a_key_with_non_ascii_characters_matches(db, group_a):
    # JSON stores "ü" escaped on some databases; the lookup must still match.
    configure()
    first, _ = upload(group_a, "Übersicht für Müller.pdf", b"1")
    second, was_version = upload(group_a, "Übersicht für Müller.pdf", b"2")
    assert was_version and first.pk == second.pk
