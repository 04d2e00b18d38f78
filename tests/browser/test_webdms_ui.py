"""The WebDMS of issue 15 in headless Chromium: the folder tree filters the
table, the pager (numbers, last page, page size), headers not truncated, the
Fields tab's date picker saves, Ctrl+C with and without a selection, the
Conversation tab. Screenshots: test-artifacts/webdms-*.png."""

from __future__ import annotations

import pytest

from archive.models import ArchiveSettings, Document
from tests.archive.mail_samples import text_mail
from tests.archive.mailbox_samples import archived_at, thread_mail
from tests.browser.conftest import read_clipboard

pytestmark = pytest.mark.django_db(transaction=True)
BOX = "alice@imap.example.com"


def rows(page) -> set[int]:
    return {int(n) for n in page.eval_on_selector_all("tr[data-number]", "rs => rs.map(r => r.dataset.number)")}


def test_the_folder_tree_filters_the_table(page, login, alice, group_a, artifacts_dir):
    ArchiveSettings.objects.filter(pk=ArchiveSettings.load().pk).update(primary_usage="mails")
    inbox = [archived_at(text_mail(f"in {i}"), group_a, [(BOX, "INBOX")], subject=f"In {i}") for i in range(3)]
    project = archived_at(text_mail("p"), group_a, [(BOX, "INBOX/Projects")], subject="Project plan")
    login("alice", "alice-pass-123")
    page.goto("/dms/")
    assert rows(page) == {d.pk for d in [*inbox, project]}
    tree = page.locator("#folder-tree")
    assert tree.locator("a[data-folder='INBOX'] + .count").inner_text() == "3"
    page.screenshot(path=str(artifacts_dir / "webdms-folder-tree.png"), full_page=True)
    tree.locator("a[data-folder='INBOX/Projects']").click()
    page.wait_for_selector("#folder-tree a.current[data-folder='INBOX/Projects']")
    assert rows(page) == {project.pk}
    assert page.locator(f"tr[data-number='{project.pk}'] td.col-folder").inner_text() == "INBOX/Projects"
    assert page.locator(f"tr[data-number='{project.pk}'] td.col-mailbox").inner_text() == BOX
    tree.locator("a[data-folder='INBOX']").click()
    page.wait_for_selector("#folder-tree a.current[data-folder='INBOX']")
    assert rows(page) == {d.pk for d in inbox}
    # The row is a link everywhere, not only its number.
    page.locator(f"tr[data-number='{inbox[0].pk}'] td.col-subject a").click()
    page.wait_for_selector(f"#document[data-number='{inbox[0].pk}']")


def test_the_pager_has_numbers_a_last_page_and_a_page_size(page, login, alice, make_document, artifacts_dir):
    for i in range(60):
        make_document(name=f"f{i:02d}.txt")
    login("alice", "alice-pass-123")
    page.goto("/dms/")
    assert len(rows(page)) == 50
    page.select_option("#page-size", "25")  # applies when chosen (static/webdms.js)
    page.wait_for_selector("#pager .page-last")
    assert len(rows(page)) == 25
    page.click("#pager a.page-number:text-is('2')")
    page.wait_for_selector("#pager .page-current:text-is('2')")
    page.click("#pager .page-last")
    page.wait_for_selector("#pager .page-current:text-is('3')")
    assert len(rows(page)) == 10
    page.screenshot(path=str(artifacts_dir / "webdms-pager.png"), full_page=True)
    page.click("#pager .page-first")
    page.wait_for_selector("#pager .page-current:text-is('1')")


def test_short_column_labels_are_not_cut(page, login, alice, make_document):
    make_document(name="a.txt")
    page.set_viewport_size({"width": 1024, "height": 800})
    login("alice", "alice-pass-123")
    page.goto("/dms/?reduced=0")
    cut = page.eval_on_selector_all(
        "table.documents thead th[data-field] a",
        "links => links.filter(a => a.scrollWidth > a.parentElement.clientWidth).map(a => a.textContent.trim())",
    )
    assert cut == []


def test_the_date_picker_saves_an_iso_date_in_the_archive_zone(page, login, alice, make_document, settings):
    document = make_document(values={"date": "2015-11-29T09:45:18+01:00"})
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{document.pk}/#fields")
    picker = page.locator("#id_date")
    assert picker.get_attribute("type") == "datetime-local"
    assert picker.input_value() == "2015-11-29T08:45:18"  # the archive's zone (UTC in the tests)
    picker.fill("2016-01-02T03:04:05")
    page.click("#panel-fields button[type=submit]")
    page.wait_for_selector(".messages:has-text('Fields saved.')")
    document.refresh_from_db()
    assert document.values["date"] == "2016-01-02T03:04:05+00:00"


def test_ctrl_c_in_the_view_tab_copies_a_selection_else_the_link(page, login, alice, group_a):
    mail = archived_at(
        text_mail("hello", subject="Quarterly figures"), group_a, [(BOX, "INBOX")], subject="Quarterly figures"
    )
    settings = ArchiveSettings.load()
    settings.dns_name = "https://archive.example.com"
    settings.save()
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{mail.pk}/")
    page.wait_for_selector("#document[data-link-ready='true']", state="attached")
    page.click("h1", click_count=3)  # select the title line
    page.keyboard.press("Control+c")
    assert read_clipboard(page)["text/plain"].startswith("Quarterly figures")
    page.click("#panel-view", position={"x": 2, "y": 2})  # a click collapses the selection
    page.keyboard.press("Control+c")
    assert read_clipboard(page)["text/plain"].endswith(f"/perl/avclient/index.pl?target=new&go={mail.pk}")


def test_the_conversation_tab_lists_the_thread(page, login, alice, group_a, artifacts_dir):
    root = archived_at(
        thread_mail("Offer", "<root@x>"), group_a, [(BOX, "INBOX")], subject="Offer", message_id="<root@x>"
    )
    reply = archived_at(
        thread_mail("Re: Offer", "<r1@x>", reply_to="<root@x>", day=2), group_a, [(BOX, "Sent")], subject="Re: Offer"
    )
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{reply.pk}/")
    page.click("#tab-conversation")
    assert page.locator("#conversation tr[data-number]").count() == 2
    page.screenshot(path=str(artifacts_dir / "webdms-conversation.png"), full_page=True)
    page.click(f"#conversation tr[data-number='{root.pk}'] a")
    page.wait_for_selector(f"#document[data-number='{root.pk}']")
    assert Document.objects.filter(pk__in=[root.pk, reply.pk]).count() == 2
