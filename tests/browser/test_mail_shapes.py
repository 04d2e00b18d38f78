"""The real-world mail shapes of issue 15 in headless Chromium: attached and
forwarded messages shown as mail, charsets read as written, an uploaded .eml
shown as mail, and a body frame as tall as its content. Each test keeps a
screenshot in test-artifacts/mail-*.png for a reviewer to look at."""

from __future__ import annotations

import pytest

from tests.archive.mail_samples import (
    archive_mail,
    forward_as_body,
    labelled_mail,
    nested_mail,
    raw_subject_mail,
    sibling_charset_mail,
    text_mail,
)

pytestmark = pytest.mark.django_db(transaction=True)


def open_mail(page, login, number: int, *, logged_in: bool = False):
    if not logged_in:
        login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{number}/")
    # The frame has told the page its height (static/mail-frame.js → static/webdms.js).
    page.wait_for_function("document.getElementById('mail-body').dataset.sized === 'true'")
    page.wait_for_load_state("networkidle")
    frame = page.frame_locator("#mail-body")
    settled(page, frame)
    return frame


def settled(page, frame) -> None:
    """Until the frame's last height message has arrived (the first one may
    come before the body's fonts are laid out); fails if it never fits."""
    for _ in range(40):
        if fits(page, frame):
            return
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert fits(page, frame), (frame_height(page), content_height(frame))


def frame_height(page) -> float:
    return page.locator("#mail-body").evaluate("el => el.getBoundingClientRect().height")


def content_height(frame) -> float:
    return frame.locator("html").evaluate("el => el.getBoundingClientRect().height")


def fits(page, frame) -> bool:
    """The frame is as tall as its content (its border, and the floor for a tiny body, aside)."""
    return abs(frame_height(page) - max(content_height(frame) + 2, 64)) <= 2


def test_attached_messages_show_as_mail_and_are_offered_under_their_names(page, login, alice, group_a, artifacts_dir):
    doc = archive_mail(nested_mail(), group_a)
    frame = open_mail(page, login, doc.pk)
    names = page.locator("#mail-attachments li > a").all_inner_texts()
    assert names == ["originalmail.eml", "DSN57BAC498.txt", "original message.eml", "draft-ietf-mboned-mix-00.txt"]
    sections = frame.locator("section.mail-nested")
    assert sections.count() == 2
    assert "Undelivered Mail Returned to Sender" in sections.nth(0).inner_text()
    assert "The mail could not be delivered." in sections.nth(0).inner_text()
    assert "Here is the draft." in sections.nth(1).inner_text()
    # The whole of it is visible: the frame is as tall as what it shows.
    assert fits(page, frame)
    page.screenshot(path=str(artifacts_dir / "mail-nested.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#mail-attachments a", has_text="originalmail.eml").click()
    assert download.value.suggested_filename == "originalmail.eml"


def test_a_forward_whose_body_is_the_message_shows_its_headers_and_body(page, login, alice, group_a, artifacts_dir):
    doc = archive_mail(forward_as_body(), group_a)
    frame = open_mail(page, login, doc.pk)
    forwarded = frame.locator("section.mail-nested").inner_text()
    assert "Forwarded message" in forwarded and "Carol <carol@example.com>" in forwarded
    assert "The figures are up 4 %." in forwarded
    assert page.locator("#mail-attachments li > a").all_inner_texts() == ["figures.csv"]
    page.screenshot(path=str(artifacts_dir / "mail-forward.png"), full_page=True)


def test_charsets_read_as_written(page, login, alice, group_a, artifacts_dir):
    cases = [
        (raw_subject_mail("邮件传输失败！", "gb2312"), "subject", "邮件传输失败！"),
        (raw_subject_mail("Узнай как заработать", "cp1251"), "subject", "Узнай как заработать"),
        (sibling_charset_mail(), "body", "Ci vediamo martedì."),
        (labelled_mail("邮件传输失败，请稍后再试。", "gb2312", "utf-8"), "body", "邮件传输失败，请稍后再试。"),
        (labelled_mail("¿Cuándo tendrás tiempo?", "ansi_x3.110-1983", "latin-1"), "body", "¿Cuándo tendrás tiempo?"),
    ]
    docs = [(archive_mail(raw, group_a), where, text) for raw, where, text in cases]
    login("alice", "alice-pass-123")
    for number, (doc, where, text) in enumerate(docs, 1):
        page.goto(f"/dms/doc/{doc.pk}/")
        page.wait_for_function("document.getElementById('mail-body').dataset.sized === 'true'")
        settled(page, page.frame_locator("#mail-body"))
        if where == "subject":
            assert page.locator("#mail-subject").inner_text() == text
        else:
            assert text in page.frame_locator("#mail-body").locator("body").inner_text()
            assert "\ufffd" not in page.frame_locator("#mail-body").locator("body").inner_text()
        page.screenshot(path=str(artifacts_dir / f"mail-charset-{number}.png"))


def test_an_uploaded_eml_is_shown_as_mail_with_its_fields_filled(page, login, alice, make_document, artifacts_dir):
    doc = make_document(content=nested_mail(), name="bounce.eml")  # the archive is for documents
    frame = open_mail(page, login, doc.pk)
    assert page.locator("#mail-subject").inner_text() == "Fwd: two messages"
    assert page.locator("#mail-from").inner_text() == "Helpdesk <helpdesk@example.com>"
    assert frame.locator("section.mail-nested").count() == 2
    page.screenshot(path=str(artifacts_dir / "mail-uploaded-eml.png"), full_page=True)
    page.locator('[role="tab"][data-tab="fields"]').click()
    values = page.locator("#panel-fields input, #panel-fields textarea").evaluate_all("els => els.map(e => e.value)")
    assert "Helpdesk <helpdesk@example.com>" in values and "Fwd: two messages" in values
    assert "alice@example.com" in values


def test_the_body_frame_is_as_tall_as_a_short_or_a_long_mail(page, login, alice, group_a, artifacts_dir):
    short = archive_mail(text_mail("Thanks, see you tomorrow."), group_a)
    frame = open_mail(page, login, short.pk)
    assert frame_height(page) < 120  # no large empty area under a one-line mail
    assert fits(page, frame)
    page.screenshot(path=str(artifacts_dir / "mail-short.png"), full_page=True)

    long = archive_mail(text_mail("\n".join(f"Line {n} of a long mail." for n in range(200))), group_a)
    frame = open_mail(page, login, long.pk, logged_in=True)
    assert frame_height(page) > 2000
    assert fits(page, frame)
    assert frame.locator("body").evaluate("b => b.scrollHeight <= window.innerHeight + 2")  # nothing to scroll inside


def test_a_frame_height_from_anywhere_else_is_ignored(page, login, alice, group_a):
    doc = archive_mail(text_mail("short"), group_a)
    open_mail(page, login, doc.pk)
    before = frame_height(page)
    # The page itself (or any other window) posting a height changes nothing.
    page.evaluate("window.postMessage({mailFrameHeight: 5000}, '*')")
    page.wait_for_function("true")
    page.evaluate("() => new Promise(r => setTimeout(r, 50))")
    assert frame_height(page) == before
