"""No PDF JavaScript ever runs (headless Chromium): the View tab draws PDFs with
PDF.js — text and all — and the file's own URL is a download, never the
browser's PDF viewer, which would run the PDF's ``app.alert``."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

from tests.browser.conftest import LAUNCH_OPTIONS
from tests.browser.settings_form import log_in_as

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def pdfjs_installed():
    """The project's own install step (`make run` / `make test` run it too); a
    no-op once the pinned files are in place."""
    result = subprocess.run(["bash", "scripts/vendor_static.sh"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"scripts/vendor_static.sh failed: {result.stderr}", pytrace=False)


TEXT = "Quarterly report 2026"


def pdf_with_javascript(text: str) -> bytes:
    """One page with ``text``, and JavaScript three ways: the open action, a
    document-level script and a page-open action — each would raise a dialog."""
    script = b"app.alert('pdf-javascript-ran');"
    content = b"BT /F1 24 Tf 72 700 Td (" + text.encode() + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R /Names << /JavaScript << /Names [(hello) 5 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 6 0 R >> >> /AA << /O 5 0 R >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Action /S /JavaScript /JS (" + script + b") >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def hostile_pdf(make_document):
    return make_document(content=pdf_with_javascript(TEXT), name="report.pdf")


@pytest.fixture
def watched(page):
    """Every dialog (answered, so nothing hangs) and every CSP violation report."""
    seen = {"dialogs": [], "csp": []}

    def on_dialog(dialog):
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda message: seen["csp"].append(message.text) if "Content Security Policy" in message.text else None,
    )
    return seen


def test_the_view_tab_renders_the_pdf_text_with_pdfjs_and_runs_none_of_its_javascript(
    page, live_server, admin_user, hostile_pdf, watched
):
    log_in_as(page, live_server, admin_user)
    response = page.goto(f"/dms/doc/{hostile_pdf.pk}/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "unsafe-inline" not in csp
    page.wait_for_selector("#pdf-viewer[data-rendered]")
    assert page.get_attribute("#pdf-viewer", "data-rendered") == "1"
    # The text layer PDF.js builds from the page holds the PDF's text (drawn
    # before data-rendered is set) ...
    assert TEXT in page.text_content("#pdf-viewer .textLayer")
    # ... and the canvas under it has ink on it.
    dark_pixels = page.evaluate(
        """() => {
            const canvas = document.querySelector('#pdf-viewer canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let dark = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] < 100 && data[i + 3] > 0) dark += 1;
            return dark;
        }"""
    )
    assert dark_pixels > 100
    # No plugin, no frame of the browser's own viewer: PDF.js and nothing else.
    assert page.locator("#panel-view iframe, #panel-view embed, #panel-view object").count() == 0
    page.screenshot(path=str(ROOT / "test-artifacts" / "pdf-viewer.png"))
    page.click("#tab-fields")
    page.click("#tab-view")
    assert watched["dialogs"] == []
    assert watched["csp"] == []


def test_the_pdf_file_url_is_a_download_that_runs_no_javascript(page, live_server, admin_user, hostile_pdf, watched):
    log_in_as(page, live_server, admin_user)
    url = reverse("archive:file", args=[hostile_pdf.pk, hostile_pdf.files.get().pk])
    headers = page.request.get(url).headers
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["content-type"] == "application/octet-stream"
    assert "sandbox" in headers["content-security-policy"]
    with page.expect_download() as download:
        try:
            page.goto(url)
        except Exception as exc:  # Chromium reports a navigation that became a download as an error
            assert "Download is starting" in str(exc)
    assert download.value.suggested_filename == "report.pdf"
    # "Open file" on the document is the same URL.
    page.goto(f"/dms/doc/{hostile_pdf.pk}/")
    page.wait_for_selector("#pdf-viewer[data-rendered]")
    with page.expect_download():
        page.click("#open-file")
    assert watched["dialogs"] == []


def test_the_same_pdf_in_chromiums_own_viewer_does_raise_the_dialog(browser, live_server):
    """The check above can fail: served inline as application/pdf (as before),
    Chromium's viewer runs the script and the dialog comes. In a browser of its
    own: Chromium's PDF plugin can take its browser down when the page closes,
    and the other browser tests share theirs."""
    own = browser.browser_type.launch(**LAUNCH_OPTIONS)
    try:
        page = own.new_context(base_url=live_server.url).new_page()
        page.route(
            "**/inline-pdf/",
            lambda route: route.fulfill(status=200, content_type="application/pdf", body=pdf_with_javascript(TEXT)),
        )
        with page.expect_event("dialog", timeout=20_000) as dialog:
            page.goto("/inline-pdf/")
        assert dialog.value.message == "pdf-javascript-ran"
        dialog.value.dismiss()
    finally:
        with contextlib.suppress(Exception):  # a plugin crash on close is not this test's finding
            own.close()
