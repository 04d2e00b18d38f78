"""The WebDMS table of issue 15: mailbox and folder columns, the folder tree
and its filter, the pager, type and attachment icons, every cell a link."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from archive import folders, search
from archive.models import ArchiveSettings, FolderCount, PrimaryUsage
from archive.paging import CappedPaginator, page_links, page_size
from tests.archive.mail_samples import html_mail, text_mail
from tests.archive.mailbox_samples import archived_at
from webadmin import dashboard

ALICE_BOX = "alice@imap.example.com"
SHARED_BOX = "info@imap.example.com"


@pytest.fixture
def mails(group_a, group_b):
    """Alice's group: 3 mails in INBOX (one also in Projects), 1 in Sent; another group's mail elsewhere."""
    made = [
        archived_at(text_mail(f"inbox {i}", subject=f"In {i}"), group_a, [(ALICE_BOX, "INBOX")], subject=f"In {i}")
        for i in range(2)
    ]
    made.append(
        archived_at(
            html_mail("<p>x</p>", subject="Both"),
            group_a,
            [(ALICE_BOX, "INBOX"), (ALICE_BOX, "INBOX/Projects")],
            subject="Both",
        )
    )
    made.append(archived_at(text_mail("sent", subject="Out"), group_a, [(ALICE_BOX, "Sent")], subject="Out"))
    archived_at(text_mail("secret", subject="Foreign"), group_b, [(SHARED_BOX, "Secret")], subject="Foreign")
    return made


def table(client, **params):
    response = client.get(reverse("archive:table"), params)
    assert response.status_code == 200
    return response


def test_mail_rows_show_their_mailbox_and_folder_columns(client, alice, mails):
    client.force_login(alice)
    response = table(client)
    names = [c.name for c in response.context["columns"]]
    assert "mailbox" in names and "folder" in names
    places = {
        row.document.pk: {c.name: v for c, v in row.cells if c.name in ("mailbox", "folder")}
        for row in response.context["rows"]
    }
    assert places[mails[0].pk] == {"mailbox": ALICE_BOX, "folder": "INBOX"}
    assert places[mails[2].pk] == {"mailbox": ALICE_BOX, "folder": "INBOX (+1)"}  # also in Projects
    assert places[mails[3].pk] == {"mailbox": ALICE_BOX, "folder": "Sent"}


def test_the_columns_cost_one_query_per_page_not_per_row(client, alice, group_a):
    client.force_login(alice)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            table(client)
        return len(ctx.captured_queries)

    archived_at(text_mail("one"), group_a, [(ALICE_BOX, "INBOX")])
    one = queries()
    for i in range(12):
        archived_at(text_mail(f"more {i}"), group_a, [(ALICE_BOX, f"F{i % 3}")])
    assert queries() == one


def test_the_folder_tree_counts_only_what_the_user_may_see(client, alice, mails):
    client.force_login(alice)
    tree = table(client).context["folders"]
    assert [box.mailbox for box in tree] == [ALICE_BOX]  # the other group's mailbox is not shown
    counts = {f.folder: f.count for f in tree[0].folders}
    assert counts == {"INBOX": 3, "INBOX/Projects": 1, "Sent": 1}
    projects = next(f for f in tree[0].folders if f.folder == "INBOX/Projects")
    assert (projects.label, projects.depth) == ("Projects", 1)
    html = table(client).content.decode()
    assert 'id="folder-tree"' in html and SHARED_BOX not in html


def test_the_tree_filters_the_table_by_mailbox_and_folder(client, alice, mails):
    client.force_login(alice)
    numbers = lambda **p: {r.document.pk for r in table(client, **p).context["rows"]}  # noqa: E731
    assert numbers(mailbox=ALICE_BOX, folder="INBOX") == {mails[0].pk, mails[1].pk, mails[2].pk}
    assert numbers(mailbox=ALICE_BOX, folder="INBOX/Projects") == {mails[2].pk}
    assert numbers(mailbox=ALICE_BOX) == {m.pk for m in mails}
    assert numbers(mailbox=SHARED_BOX) == set()  # another group's mailbox: nothing
    assert numbers(mailbox=ALICE_BOX, folder="nowhere") == set()


def test_every_cell_links_to_the_document_and_short_labels_are_whole(client, alice, mails):
    client.force_login(alice)
    html = table(client).content.decode()
    row = re.search(rf'<tr data-number="{mails[0].pk}">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'<td class="col-[a-z_]+">(.*?)</td>', row, re.S)
    assert len(cells) >= 5
    url = reverse("archive:document", args=[mails[0].pk])
    assert all(f'href="{url}"' in cell for cell in cells)
    assert '<th class="col-owner" data-field="owner" title="Owner">' in html


def test_type_and_attachment_icons_outside_media_mode(client, alice, mails, make_document, group_a):
    pdf = make_document(b"%PDF-1.4 x", name="a.pdf")
    client.force_login(alice)
    rows = {r.document.pk: r for r in table(client).context["rows"]}
    assert rows[pdf.pk].icons.kind == "pdf"
    assert rows[mails[0].pk].icons.kind == "mail"
    html = table(client).content.decode()
    assert "/static/icons/type-pdf.svg" in html and "/static/icons/type-mail.svg" in html
    settings = ArchiveSettings.load()
    settings.primary_usage = PrimaryUsage.MEDIA
    settings.save()
    media = table(client)
    assert all(r.icons is None for r in media.context["rows"])  # the posters show the type there


def test_the_attachment_icon_counts_the_current_versions_attachments(alice, group_a):
    from archive import services, storage
    from archive.models import DocumentFile, FileRole
    from archive.table import document_icons

    doc = archived_at(html_mail("<p>x</p>"), group_a, [(ALICE_BOX, "INBOX")])
    blob = storage.put_bytes(b"%PDF-1.4 report")
    DocumentFile.objects.create(
        document=doc,
        role=FileRole.ATTACHMENT,
        name="report.pdf",
        content_type="application/pdf",
        sha256=blob.sha256,
        size=blob.size,
    )
    assert document_icons([doc])[doc.pk].attachments == 1
    plain = archived_at(text_mail("none"), group_a, [(ALICE_BOX, "INBOX")])
    assert document_icons([plain])[plain.pk].attachments == 0
    assert services  # imported for the store's fixtures


def test_page_links_number_first_last_and_gaps(alice, make_document, group_a):
    from archive.models import Document

    for i in range(30):
        make_document(name=f"f{i}.txt")
    paginator = CappedPaginator(Document.objects.order_by("pk"), 2, page=8)
    assert page_links(paginator.get_page(8)) == [1, None, 6, 7, 8, 9, 10, None, 15]
    assert page_links(paginator.get_page(1)) == [1, 2, 3, None, 15]
    capped = CappedPaginator(Document.objects.order_by("pk"), 2, page=1, limit=10)
    first = capped.get_page(1)
    assert capped.more  # counting stopped: the last page is not known, so not linked
    assert page_links(first) == [1, 2, 3]


def test_page_size_is_one_of_the_offered_sizes():
    assert page_size("100") == 100
    assert page_size("25") == 25
    for bad in ("7", "100000", "-1", "", "x", "²"):
        assert page_size(bad) == 50


def test_the_pager_shows_numbers_last_page_and_size(client, alice, make_document):
    for i in range(60):
        make_document(name=f"f{i}.txt")
    client.force_login(alice)
    response = table(client, size="25", page="2")
    page = response.context["page"]
    assert (page.number, len(page.object_list), page.paginator.num_pages) == (2, 25, 3)
    html = response.content.decode()
    assert 'class="page-current" aria-current="page">2<' in html
    assert 'class="page-last" href="?size=25&amp;page=3"' in html
    assert '<option value="25" selected>' in html
    assert len(table(client, size="5000").context["rows"]) == 50  # not a size on offer: the default


def test_the_tree_is_reused_until_a_mail_arrives(client, alice, mails, group_a):
    client.force_login(alice)
    table(client)
    with CaptureQueriesContext(connection) as ctx:
        first = table(client).context["folders"]
    reused = [q["sql"] for q in ctx.captured_queries if "GROUP BY" in q["sql"].upper()]
    assert reused == []  # the grouped count ran on the first page view only
    archived_at(text_mail("new"), group_a, [(ALICE_BOX, "Archive/2024")])
    fresh = table(client).context["folders"]
    assert "Archive/2024" not in {f.folder for f in first[0].folders}
    assert "Archive/2024" in {f.folder for f in fresh[0].folders}


@pytest.mark.django_db(transaction=True)  # InnoDB FULLTEXT sees committed rows only
def test_a_search_stays_in_the_chosen_mailbox_and_folder(client, alice, mails):
    """Searching with a folder chosen in the tree finds only what was archived there (the
    search form carries the choice along); without it, the whole visible archive."""
    search.index_documents([m.pk for m in mails])
    client.force_login(alice)
    numbers = lambda **p: {r.document.pk for r in table(client, **p).context["rows"]}  # noqa: E731
    assert numbers(q="both") == {mails[2].pk}
    assert numbers(q="both", mailbox=ALICE_BOX, folder="INBOX/Projects") == {mails[2].pk}
    assert numbers(q="both", mailbox=ALICE_BOX) == {mails[2].pk}
    assert numbers(q="both", mailbox=ALICE_BOX, folder="Sent") == set()
    assert numbers(q="out", mailbox=ALICE_BOX, folder="Sent") == {mails[3].pk}
    assert numbers(q="out", mailbox=ALICE_BOX, folder="INBOX") == set()
    assert numbers(q="out", mailbox=SHARED_BOX) == set()
    page = table(client, q="out", mailbox=ALICE_BOX, folder="Sent").content.decode()
    form = re.search(r'<form class="search".*?</form>', page, re.S)
    assert form is not None
    assert f'name="mailbox" value="{ALICE_BOX}"' in form.group(0) and 'name="folder" value="Sent"' in form.group(0)


def test_the_tree_reads_precomputed_counts_and_counts_only_newer_mail_live(client, alice, mails, group_a):
    client.force_login(alice)
    before = table(client).context["folders"]
    assert folders.folder_counts_refresh() == 4  # alice's group: INBOX, INBOX/Projects, Sent; the other group: Secret
    counts = lambda: {f.folder: f.count for f in table(client).context["folders"][0].folders}  # noqa: E731
    assert table(client).context["folders"] == before  # the same tree from the stored counts
    # The tree is read from the rows (not recounted): a changed row shows.
    FolderCount.objects.filter(owner_group=group_a, folder="Sent").update(mails=1000)
    cache.clear()  # (a refresh writes new rows, which ends the cached tree)
    assert counts()["Sent"] == 1000
    # Mail archived after the count is added live, also to a folder the rows do not know yet.
    archived_at(text_mail("late"), group_a, [(ALICE_BOX, "Sent"), (ALICE_BOX, "Archive/2024")])
    assert counts() == {"INBOX": 3, "INBOX/Projects": 1, "Sent": 1001, "Archive/2024": 1}
    folders.folder_counts_refresh()
    assert counts() == {"INBOX": 3, "INBOX/Projects": 1, "Sent": 2, "Archive/2024": 1}


def test_the_counts_are_refreshed_when_many_locations_are_counted_live(alice, mails, group_a, monkeypatch):
    monkeypatch.setattr(folders, "LIVE_LOCATIONS_MAX", 2)
    assert folders.folder_counts_due()  # 6 locations, none counted yet
    dashboard.figures_refresh()
    assert not folders.folder_counts_due()
    assert FolderCount.objects.filter(owner_group=group_a).count() == 3
    for i in range(2):
        archived_at(text_mail(f"more {i}"), group_a, [(ALICE_BOX, "INBOX")])
    assert not folders.folder_counts_due()  # 2 counted live: not yet
    archived_at(text_mail("one more"), group_a, [(ALICE_BOX, "INBOX")])
    assert folders.folder_counts_due()
    dashboard.figures_refresh()
    assert FolderCount.objects.get(owner_group=group_a, folder="INBOX").mails == 6
