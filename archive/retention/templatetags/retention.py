"""``{% retention_end document as end %}``: the document view's retention end
(``policies.retention_end``, the one rule) without the view knowing retention."""

from __future__ import annotations

import datetime as dt

from django import template

from archive.models import Document

from .. import holds, policies

register = template.Library()


@register.simple_tag
def retention_end(document: Document) -> dt.date | None:
    return policies.retention_end(document)


@register.simple_tag
def retention_held(document: Document) -> bool:
    return holds.is_held(document.pk)
