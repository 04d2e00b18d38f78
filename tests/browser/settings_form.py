"""Helpers for the settings browser tests: every setting is changed the way an
administrator does it — through the form at /webadmin/archive/."""

from __future__ import annotations

SAVED = "Archive settings saved."


def log_in_as(page, live_server, user) -> None:
    """A session for ``user`` in the browser, without typing the login form
    (tests/browser/test_access_link.py covers that); saves a second per test."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def change_settings(page, **values: object) -> None:
    """Open Archive administration, set each field, save, and insist it saved.

    ``True``/``False`` tick a checkbox, strings and numbers fill an input, and
    for a select a string is the option's visible label."""
    page.goto("/webadmin/archive/")
    for name, value in values.items():
        selector = f"#id_{name}"
        tag = page.eval_on_selector(selector, "el => el.tagName + ':' + (el.type || '')")
        if tag == "INPUT:checkbox":
            page.set_checked(selector, bool(value))
        elif tag.startswith("SELECT"):
            page.select_option(selector, label=str(value))
        else:
            page.fill(selector, str(value))
    page.click("form.settings-form button[type=submit]")
    page.wait_for_load_state()
    messages = page.text_content(".messages") or ""
    assert SAVED in messages, f"settings not saved: {messages.strip()}"


def column_names(page) -> list[str]:
    """The field names of the table's columns, left to right."""
    return page.eval_on_selector_all("table.documents thead th[data-field]", "ths => ths.map(t => t.dataset.field)")


def visible_texts(page, selector: str) -> list[str]:
    return [el.inner_text().strip() for el in page.query_selector_all(selector) if el.is_visible()]
