"""A hostile mail opened in headless Chromium executes nothing and loads
nothing remote until the user asks for it (issue 3 items 6 and 7).

Every payload, if it ran, would leave a trace the test looks for: a dialog,
a changed window name or title, a request to the live server's ``/xss-hit/``
or to the "remote" server's ``/hit/``. The remote server (a second HTTP server
on 127.0.0.1, another origin) also counts the images it is asked for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.archive.mail_samples import PNG, archive_mail, html_mail

pytestmark = pytest.mark.django_db(transaction=True)


class RemoteServer:
    """The internet, as far as a mail is concerned: records every request."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.paths.append(self.path)
                body = PNG if self.path.startswith("/remote/") else b""
                self.send_response(200)
                self.send_header("Content-Type", "image/png" if body else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815 - a submitted form must be seen too

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def hits(self, prefix: str) -> list[str]:
        return [p for p in self.paths if p.startswith(prefix)]


@pytest.fixture
def remote() -> Iterator[RemoteServer]:
    server = RemoteServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


REFRESH = '<meta http-equiv="refresh" content="0;url={remote}/hit/refresh">'


def payloads(live: str, remote: str, *, refresh: bool = True) -> str:
    """One HTML body with the usual tricks; each one reports itself if it runs."""

    def js(tag: str) -> str:
        return (
            f"top.name='pwned-{tag}';document.title='pwned-{tag}';"
            f"fetch('{live}/xss-hit/{tag}');new Image().src='{remote}/hit/{tag}';alert('{tag}')"
        )

    return f"""
<h1 id="greeting">Hello Alice</h1>
<p>Our logo: <img alt="logo" src="cid:logo@example.com"></p>
<p>Tracking: <img alt="remote" src="{remote}/remote/pixel.png"></p>
<script>{js("script")}</script>
<img src="x" onerror="{js("onerror")}">
<img src="cid:missing@example.com" onerror="{js("cid-onerror")}">
<svg onload="{js("svg")}"><circle r="4"/></svg>
<svg><animate onbegin="{js("animate")}" attributeName="x" dur="1s"/></svg>
<body onload="{js("body")}">
<details open ontoggle="{js("details")}"><summary>s</summary></details>
<a id="js-link" href="javascript:{js("js-link")}">click me</a>
<a id="data-link" href="data:text/html,&lt;script&gt;{js("data-link")}&lt;/script&gt;">data</a>
{REFRESH.format(remote=remote) if refresh else ""}
<base href="{remote}/hit/base/">
<link rel="stylesheet" href="{remote}/hit/link.css">
<style>@import url({remote}/hit/import.css); h1 {{ background: url({remote}/hit/style-bg.png) }}</style>
<div style="background-image: url({remote}/hit/inline-bg.png); width: 20px; height: 20px">bg</div>
<div style="background: u\\72l({remote}/hit/escaped-bg.png)">bg2</div>
<iframe src="{remote}/hit/iframe"></iframe>
<iframe srcdoc="&lt;script&gt;{js("srcdoc")}&lt;/script&gt;"></iframe>
<object data="{remote}/hit/object"></object><embed src="{remote}/hit/embed">
<form id="form" action="{remote}/hit/form" method="post"><input name="q" value="x">
<button id="submit" type="submit">Send</button></form>
<math><mtext><table><mglyph><style><img src=x onerror="{js("mxss")}"></style></mglyph></table></mtext></math>
<noscript><p title="</noscript><img src=x onerror={js("noscript")}>"></noscript>
<video poster="{remote}/hit/poster.png"><source src="{remote}/hit/video.mp4"></video>
"""


def hostile(group_a, live_server, remote, *, refresh: bool = True):
    raw = html_mail(payloads(live_server.url, remote.url, refresh=refresh), text="plain version")
    # A hostile header block, too: the header view must escape it.
    raw = raw.replace(b"Subject: ", b"Subject: <img src=x onerror=alert('subject')> ", 1)
    return archive_mail(raw, group_a)


@pytest.fixture
def hostile_mail(alice, group_a, live_server, remote):
    return hostile(group_a, live_server, remote)


def open_mail(page, login, document) -> tuple[list[str], list[str]]:
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{document.pk}/")
    frame = page.frame_locator("#mail-body")
    frame.locator("h1", has_text="Hello Alice").wait_for()
    page.wait_for_load_state("networkidle")
    return dialogs, requests


def assert_nothing_ran(page, dialogs: list[str], requests: list[str], remote: RemoteServer) -> None:
    assert dialogs == []
    assert page.evaluate("window.name") == ""
    assert "pwned" not in page.title()
    assert page.frame_locator("#mail-body").locator("html").evaluate("() => document.title") == ""
    assert [url for url in requests if "/xss-hit/" in url or "/hit/" in url] == []
    assert remote.hits("/hit/") == []


def test_a_hostile_mail_executes_nothing_and_loads_nothing_remote(page, login, hostile_mail, remote):
    dialogs, requests = open_mail(page, login, hostile_mail)
    assert_nothing_ran(page, dialogs, requests, remote)
    frame_element = page.locator("#mail-body")
    sandbox = frame_element.get_attribute("sandbox")
    assert sandbox is not None
    # Scripts, but an opaque origin: only our frame-height script may run (the body's CSP).
    assert "allow-same-origin" not in sandbox
    # The subject with markup is shown as text.
    assert "<img src=x onerror=alert('subject')>" in page.locator("#mail-subject").inner_text()

    frame = page.frame_locator("#mail-body")
    # The body is there, with its inline image served from the message itself…
    assert frame.locator("h1").inner_text() == "Hello Alice"
    assert frame.locator("img[alt=logo]").evaluate("img => img.complete && img.naturalWidth") == 1
    # …and the remote image is a placeholder that asked nobody.
    assert remote.hits("/remote/") == []
    assert "127.0.0.1" not in (frame.locator("img[alt=remote]").get_attribute("src") or "")

    # Clicking what is left of the links and the form does nothing either.
    frame.locator("text=click me").click()
    frame.locator("text=data").first.click()
    assert frame.locator("form, input, button").count() == 0
    page.wait_for_timeout(300)
    assert len(page.context.pages) == 1
    assert_nothing_ran(page, dialogs, requests, remote)


def test_the_frame_alone_stops_everything_even_if_the_sanitiser_let_it_through(
    page, login, alice, group_a, live_server, remote, monkeypatch
):
    """Defence in depth: the sandbox and the body's CSP, without nh3. (The
    refresh, which takes the frame away, is the next test.)"""
    from archive import mailhtml, mailview

    monkeypatch.setattr(mailview, "sanitize_mail_html", lambda html, **kwargs: mailhtml.SanitizedHtml(html=html))
    dialogs, requests = open_mail(page, login, hostile(group_a, live_server, remote, refresh=False))
    frame = page.frame_locator("#mail-body")
    assert frame.locator("script").count() >= 1  # the payloads really are in the page
    frame.locator("#js-link").click()
    frame.locator("#submit").click()
    page.wait_for_timeout(500)
    assert dialogs == []
    assert page.evaluate("window.name") == ""
    assert "pwned" not in page.title()
    # The browser may try (Playwright reports blocked requests too); nothing arrives.
    assert remote.paths == []
    assert [url for url in requests if "/xss-hit/" in url] == []
    # Our frame-height script ran in the same frame: the mail's scripts were
    # stopped by the policy, not by scripts being off.
    page.wait_for_function("document.getElementById('mail-body').dataset.sized === 'true'")


def test_without_the_sanitiser_a_refresh_to_another_site_is_refused_by_the_pages_frame_policy(
    page, login, alice, group_a, remote, monkeypatch
):
    """The frame runs our height script, so the sandbox no longer stops a
    ``<meta http-equiv=refresh>`` (nh3 drops it): the View tab's own
    ``frame-src 'self'`` refuses the navigation, and nothing reaches the site."""
    from archive import mailhtml, mailview

    monkeypatch.setattr(mailview, "sanitize_mail_html", lambda html, **kwargs: mailhtml.SanitizedHtml(html=html))
    doc = archive_mail(html_mail("<h1>Hello Alice</h1>" + REFRESH.format(remote=remote.url)), group_a)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{doc.pk}/")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)  # a zero-second refresh has long been tried by now
    assert remote.paths == []
    assert dialogs == []


def test_remote_images_load_only_after_load_remote_images_is_clicked(page, login, hostile_mail, remote):
    dialogs, requests = open_mail(page, login, hostile_mail)
    assert remote.hits("/remote/") == []
    assert "1 remote image blocked" in page.locator("#mail-remote-notice").inner_text()

    page.click("#mail-load-remote")
    frame = page.frame_locator("#mail-body")
    frame.locator(f"img[src='{remote.url}/remote/pixel.png']").wait_for()
    page.wait_for_load_state("networkidle")
    assert frame.locator("img[alt=remote]").evaluate("img => img.complete && img.naturalWidth") == 1
    assert remote.hits("/remote/") == ["/remote/pixel.png"]
    # Loading images lets nothing else through: no CSS, no scripts, no frames.
    assert_nothing_ran(page, dialogs, requests, remote)

    # A fresh view blocks them again.
    page.reload()
    page.frame_locator("#mail-body").locator("h1", has_text="Hello Alice").wait_for()
    page.wait_for_load_state("networkidle")
    assert remote.hits("/remote/") == ["/remote/pixel.png"]


def test_a_link_in_the_mail_opens_in_a_new_tab_outside_the_sandbox(page, login, alice, group_a, remote):
    doc = archive_mail(html_mail(f'<p><a id="out" href="{remote.url}/page">Read online</a></p>'), group_a)
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{doc.pk}/")
    with page.context.expect_page() as new_tab:
        page.frame_locator("#mail-body").locator("text=Read online").click()
    popup = new_tab.value
    popup.wait_for_load_state()
    assert popup.url == f"{remote.url}/page"
    # noopener: the new tab cannot reach back into the archive's window.
    assert popup.evaluate("window.opener") is None
    assert page.url.endswith(f"/dms/doc/{doc.pk}/")
