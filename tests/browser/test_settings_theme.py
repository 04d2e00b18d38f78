"""Layout (Theme): the setting switches every WebDMS page between the bright
and the dark design; both keep text readable (WCAG AA contrast, 4.5:1), and a
screenshot of each is kept in test-artifacts/."""

from __future__ import annotations

import pytest

from archive.models import Theme
from tests.browser.settings_form import change_settings, log_in_as

pytestmark = pytest.mark.django_db(transaction=True)

# For every visible element that has text of its own: its colour against the
# colour actually behind it (the nearest ancestor with an opaque background).
CONTRAST_JS = """
() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.disabled || !el.checkVisibility || !el.checkVisibility()) continue;
    if (["SCRIPT", "STYLE", "OPTION", "IFRAME", "VIDEO", "IMG"].includes(el.tagName)) continue;
    const ownText = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim())
      || (el.tagName === "INPUT" && el.value && !["checkbox", "radio", "file"].includes(el.type))
      || el.tagName === "TEXTAREA";
    if (!ownText) continue;
    const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    out.push({ text: (el.innerText || el.value || el.tagName).trim().slice(0, 40), tag: el.tagName, ratio });
  }
  return out;
}
"""

BODY_LUMINANCE_JS = """
() => {
  const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}
"""


def assert_readable(page, where: str) -> None:
    elements = page.evaluate(CONTRAST_JS)
    assert len(elements) >= 3, f"{where}: nothing checked"
    poor = [e for e in elements if e["ratio"] < 4.5]
    assert not poor, f"{where}: contrast below 4.5:1 for {poor}"


@pytest.fixture
def pages(make_document, admin_user):
    document = make_document(content=b"%PDF-1.4 minutes", name="board-minutes.pdf")
    make_document(name="letter.txt")
    return {
        "table": "/dms/",
        "document": f"/dms/doc/{document.pk}/",
        "fields": f"/dms/doc/{document.pk}/#fields",
        "upload": "/dms/upload/",
        "settings": "/webadmin/archive/",
    }


def test_the_theme_switches_every_page_and_both_are_readable(
    page, browser, live_server, admin_user, pages, artifacts_dir
):
    log_in_as(page, live_server, admin_user)
    luminance: dict[str, float] = {}
    for theme in (Theme.BRIGHT, Theme.DARK):
        change_settings(page, theme=theme.label)
        for name, url in pages.items():
            page.goto(url)
            assert page.eval_on_selector("body", "b => b.className").split()[0] == f"theme-{theme.value}"
            luminance[f"{theme.value}:{name}"] = page.evaluate(BODY_LUMINANCE_JS)
            assert_readable(page, f"{theme.value} {name}")
            if name in ("table", "document"):
                page.screenshot(path=str(artifacts_dir / f"theme-{theme.value}-{name}.png"), full_page=True)
        # The login page of a visitor follows the theme as well.
        visitor = browser.new_context(base_url=live_server.url)
        try:
            login_page = visitor.new_page()
            login_page.goto("/login/")
            luminance[f"{theme.value}:login"] = login_page.evaluate(BODY_LUMINANCE_JS)
            assert_readable(login_page, f"{theme.value} login")
        finally:
            visitor.close()
    assert all(v > 0.9 for k, v in luminance.items() if k.startswith("bright:")), luminance
    assert all(v < 0.15 for k, v in luminance.items() if k.startswith("dark:")), luminance
    for theme in ("bright", "dark"):
        assert (artifacts_dir / f"theme-{theme}-table.png").stat().st_size > 1000
