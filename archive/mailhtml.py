"""The mail HTML sanitiser: ``nh3`` with an explicit e-mail allowlist (tags,
attributes, CSS properties), ``cid:`` and remote-image rewriting, plain text as
HTML, and the strict CSP of the body frame. The HTML body of a mail is hostile
input; this is the first of three independent layers that keep it inert (the
others: the sandboxed ``<iframe>`` of the View tab and ``body_csp``)."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable
from urllib.parse import unquote

import nh3
from django.conf import settings
from django.templatetags.static import static
from django.utils.html import escape, urlize

# --- The allowlist -------------------------------------------------------------------------
# What mail clients need to lay out a message; nothing that runs, submits, embeds
# or fetches. Tags not listed are dropped with their markup but keep their text.
MAIL_TAGS = frozenset(
    {
        "a",
        "abbr",
        "acronym",
        "address",
        "article",
        "aside",
        "b",
        "bdi",
        "bdo",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "main",
        "mark",
        "nav",
        "ol",
        "p",
        "pre",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "section",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    }
)
# Dropped together with their content: code, stylesheets (ammonia cannot filter
# whole stylesheets, and they may @import or url() remote content), embedded
# documents and foreign markup whose text would only be noise.
MAIL_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "title",
        "svg",
        "math",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "noscript",
        "noembed",
        "noframes",
        "template",
        "textarea",
        "select",
        "xmp",
        "plaintext",
        "button",
        "datalist",
        "audio",
        "video",
        "canvas",
        "map",
    }
)
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "border"}
MAIL_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "class", "dir", "lang", "title", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border", "align", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": _LAYOUT | {"cellpadding", "cellspacing", "summary", "frame", "rules"},
    "tr": _LAYOUT,
    "td": _LAYOUT | {"colspan", "rowspan", "nowrap", "scope", "abbr"},
    "th": _LAYOUT | {"colspan", "rowspan", "nowrap", "scope", "abbr"},
    "thead": _LAYOUT,
    "tbody": _LAYOUT,
    "tfoot": _LAYOUT,
    "col": _LAYOUT | {"span"},
    "colgroup": _LAYOUT | {"span"},
    "div": _LAYOUT,
    "p": _LAYOUT,
    "center": _LAYOUT,
    "hr": {"align", "color", "noshade", "size", "width"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"type", "value"},
    "time": {"datetime"},
    "details": {"open"},
}
# Inline CSS that shapes text and boxes. Not listed, so removed: anything that
# loads (background-image, list-style-image, border-image, cursor, mask,
# filter, content) and anything that lets a mail draw over the page
# (position, z-index, transform).
MAIL_STYLE_PROPERTIES = frozenset(
    {
        "background",
        "background-color",
        "border",
        "border-bottom",
        "border-bottom-color",
        "border-bottom-left-radius",
        "border-bottom-right-radius",
        "border-bottom-style",
        "border-bottom-width",
        "border-collapse",
        "border-color",
        "border-left",
        "border-left-color",
        "border-left-style",
        "border-left-width",
        "border-radius",
        "border-right",
        "border-right-color",
        "border-right-style",
        "border-right-width",
        "border-spacing",
        "border-style",
        "border-top",
        "border-top-color",
        "border-top-left-radius",
        "border-top-right-radius",
        "border-top-style",
        "border-top-width",
        "border-width",
        "box-sizing",
        "caption-side",
        "clear",
        "color",
        "direction",
        "display",
        "empty-cells",
        "float",
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-variant",
        "font-weight",
        "height",
        "letter-spacing",
        "line-height",
        "list-style",
        "list-style-position",
        "list-style-type",
        "margin",
        "margin-bottom",
        "margin-left",
        "margin-right",
        "margin-top",
        "max-height",
        "max-width",
        "min-height",
        "min-width",
        "opacity",
        "overflow",
        "overflow-wrap",
        "padding",
        "padding-bottom",
        "padding-left",
        "padding-right",
        "padding-top",
        "table-layout",
        "text-align",
        "text-decoration",
        "text-indent",
        "text-transform",
        "vertical-align",
        "white-space",
        "width",
        "word-break",
        "word-spacing",
        "word-wrap",
    }
)
# CSS functions a declaration may call; anything else (expression(), image-set(),
# image(), element(), var(), env()…) drops the declaration.
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc", "min", "max", "clamp", "url"})
_CSS_FUNCTION = re.compile(r"([a-z0-9_-]+)\s*\(", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"')]*))\s*\)", re.IGNORECASE)
# Escapes and comments could hide a url( or an expression( from the checks
# (ammonia decodes escapes after our filter has run): such declarations go.
_CSS_SUSPICIOUS = ("\\", "/*", "*/", "javascript", "vbscript", "expression", "behavior", "binding")
_SAFE_CSS_URL = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&*+,=%-]+$")

REMOTE_PLACEHOLDER = "mail-remote-image.svg"
_URLIZE_MAX = 512 * 1024

BODY_STYLE = (
    "html{background:#fff;color:#1b1f24}"
    "body{margin:12px;font:15px/1.45 system-ui,sans-serif;overflow-wrap:anywhere}"
    "pre.mail-text{white-space:pre-wrap;font:14px/1.45 ui-monospace,monospace;margin:0}"
    "img{max-width:100%;height:auto}"
    ".mail-empty{color:#59636e;font-style:italic}"
    ".mail-nested{margin:18px 0 0;padding:10px 0 0 12px;border-top:1px solid #d0d7de;border-left:3px solid #d0d7de}"
    ".mail-nested-title{margin:0 0 6px;font-weight:600;color:#59636e}"
    ".mail-nested-headers{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 10px;"
    "padding:6px 10px;background:#f6f8fa;border-radius:4px}"
    ".mail-nested-headers dt{color:#59636e;font-weight:600}.mail-nested-headers dd{margin:0}"
)


@dataclasses.dataclass
class SanitizedHtml:
    html: str
    remote_blocked: int = 0
    # Content-IDs the HTML referenced (their images are shown in the body).
    cids_used: set[str] = dataclasses.field(default_factory=set)


def _is_remote(url: str) -> bool:
    lowered = url.lower()
    return lowered.startswith(("http://", "https://", "//"))


def _remote_url(url: str) -> str:
    # A scheme-relative URL would inherit our scheme; say which one it is.
    return "https:" + url if url.startswith("//") else url


def normalise_cid(value: str) -> str:
    """A Content-ID or a ``cid:`` URL's target, comparable: RFC 2392 URLs are
    %-encoded, headers carry angle brackets."""
    return unquote(value.strip()).strip().strip("<>").strip().lower()


def sanitize_mail_html(
    html: str,
    *,
    cid_url: Callable[[str], str | None],
    allow_remote: bool = False,
    placeholder_url: str | None = None,
) -> SanitizedHtml:
    """``html`` (a whole mail body, hostile) as a safe fragment.

    ``cid_url`` maps a normalised Content-ID to the URL serving that part, or
    None when the message has no such part. Remote images become
    ``placeholder_url`` unless ``allow_remote``; remote CSS backgrounds are
    removed unless ``allow_remote``.
    """
    result = SanitizedHtml(html="")
    placeholder = placeholder_url if placeholder_url is not None else static(REMOTE_PLACEHOLDER)
    # Relative URLs in the output are only the ones produced here: a mail's own
    # relative link would resolve against our site.
    produced: set[str] = set()

    def local(url: str) -> str:
        produced.add(url)
        return url

    def image_url(value: str) -> str | None:
        value = value.strip()
        if value.lower().startswith("cid:"):
            cid = normalise_cid(value[4:])
            url = cid_url(cid)
            if url is None:
                return None
            result.cids_used.add(cid)
            return local(url)
        if _is_remote(value):
            if allow_remote:
                return _remote_url(value)
            result.remote_blocked += 1
            return local(placeholder)
        return None  # data:, javascript:, relative, file:…

    def style_value(value: str) -> str | None:
        kept = []
        for declaration in value.split(";"):
            name, sep, rest = declaration.partition(":")
            name = name.strip().lower()
            rest = rest.strip()
            if not sep or not name or not rest:
                continue
            lowered = rest.lower()
            if name not in MAIL_STYLE_PROPERTIES or any(s in lowered for s in _CSS_SUSPICIOUS):
                continue
            if any(f.lower() not in _CSS_FUNCTIONS for f in _CSS_FUNCTION.findall(rest)):
                continue
            if "url" in lowered:
                rewritten = _style_urls(rest)
                if rewritten is None:
                    continue
                rest = rewritten
            kept.append(f"{name}:{rest}")
        return ";".join(kept) or None

    def _style_urls(value: str) -> str | None:
        # Every url( must be one we understand; count each as one url() token.
        if value.lower().count("url(") != len(_CSS_URL.findall(value)):
            return None
        blocked = False

        def replace(match: re.Match[str]) -> str:
            nonlocal blocked
            url = next((g for g in match.groups() if g is not None), "")
            target = image_url(url)
            if target is None or target == placeholder or not _SAFE_CSS_URL.match(target):
                blocked = True
                return ""
            return f'url("{target}")'

        rewritten = _CSS_URL.sub(replace, value)
        return None if blocked else rewritten

    def attribute(tag: str, name: str, value: str) -> str | None:
        if name == "style":
            return style_value(value)
        if tag == "img" and name == "src":
            return image_url(value)
        if tag == "a" and name == "href":
            scheme = value.strip().lower()
            return value.strip() if scheme.startswith(("http://", "https://", "mailto:")) else None
        return value

    result.html = nh3.clean(
        html,
        tags=set(MAIL_TAGS),
        clean_content_tags=set(MAIL_DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in MAIL_ATTRIBUTES.items()},
        attribute_filter=attribute,
        url_schemes={"http", "https", "mailto", "cid"},
        url_relative=lambda url: url if url in produced else None,
        filter_style_properties=set(MAIL_STYLE_PROPERTIES),
        # Links leave the sandboxed frame for a new tab, without telling the
        # target where they came from.
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return result


# A word (what urlize splits on: whitespace, <, >, quotes) that urlize could
# link: it has an @ (a mail address), :// (http, https), www. or a dot before one
# of the top-level domains urlize knows bare — every word urlize links passes.
_LINKABLE = re.compile(
    r"""(?<![^\s<>"'])(?=[^\s<>"']*(?:@|://|www\.|\.(?:com|edu|gov|int|mil|net|org)))[^\s<>"']+""", re.IGNORECASE
)


def linked_text(text: str) -> str:
    """``urlize(text, autoescape=True)``, the same string ~8× faster: urlize
    treats each word on its own and spends most of its time on words that end
    up escaped (every word before a full stop); only the words it could link
    go through it here, the rest is escaped (``tests/archive/test_mailview.py``
    compares the two on mail bodies and random text)."""
    out: list[str] = []
    end = 0
    for match in _LINKABLE.finditer(text):
        out.append(escape(text[end : match.start()]))
        out.append(urlize(match.group(), nofollow=False, autoescape=True))
        end = match.end()
    out.append(escape(text[end:]))
    return "".join(out)


def text_to_html(text: str) -> str:
    """A text/plain body as HTML: escaped, web and mail addresses linked (the
    links, too, open in a new tab)."""
    # urlize is slow on huge inputs; a giant text body is shown unlinked.
    linked = linked_text(text) if len(text) < _URLIZE_MAX else escape(text)
    cleaned = nh3.clean(
        linked,
        tags={"a"},
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return f'<pre class="mail-text">{cleaned}</pre>'


FRAME_SCRIPT = "mail-frame.js"


@functools.cache
def frame_script() -> tuple[str, str]:
    """The frame-height script (a static file of ours) and its CSP hash source."""
    path = settings.BASE_DIR / "static" / FRAME_SCRIPT
    text = path.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f"'sha256-{digest}'"


def body_csp(*, allow_remote: bool) -> str:
    """The body frame's own policy. The one script it runs is ours, allowed by
    its hash (it reports the body's height to the View tab): no script of the
    mail, inline, external, in an event handler or a ``javascript:`` URL, can
    run. ``sandbox`` repeats the iframe's sandbox (scripts, but an opaque
    origin: no cookies, no access to the page) so the body stays inert when
    opened on its own."""
    images = "'self' https: http:" if allow_remote else "'self'"
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; script-src {frame_script()[1]}; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
        "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox"
    )
