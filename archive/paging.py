"""A paginator that stops counting: ``COUNT(*)`` over a million InnoDB rows
reads them all (InnoDB keeps no row count), which would cost the table view
more than the page itself. Counting stops a little past the page asked for;
beyond that the table says "more than N"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

COUNT_LIMIT = 10_000
# Search hits are counted up to here ("more than 500 hits"): counting reads a row per hit.
SEARCH_COUNT_LIMIT = 500


if TYPE_CHECKING:  # generic only in django-stubs
    _Paginator = Paginator[Any]
else:
    _Paginator = Paginator


class CappedPaginator(_Paginator):
    # Pages further than this are not counted to: ``?page=`` with 30 digits
    # would otherwise make the count read (or SQLite refuse) that many rows.
    max_page = 10_000

    def __init__(self, object_list: Any, per_page: int, *, page: object = 1, limit: int = COUNT_LIMIT) -> None:
        super().__init__(object_list, per_page)
        wanted = page_number(page, self.max_page)
        # Always count past the requested page, so that "next" stays correct there.
        self.limit = max(limit, (wanted + 1) * per_page)

    @cached_property
    def count(self) -> int:
        # Without ORDER BY: the database may count along any index, and stop.
        counted = cast("QuerySet[Any]", self.object_list).order_by()[: self.limit + 1].count()
        self.more = counted > self.limit
        return min(counted, self.limit)

    more = False  # True once counting stopped at the limit


def page_number(page: object, maximum: int) -> int:
    """A page number from ``?page=``: 1 unless it is a number, at most ``maximum``."""
    text = str(page).strip()
    if not (text.isascii() and text.isdigit()):
        return 1
    if len(text) > len(str(maximum)):
        return maximum
    return min(max(1, int(text)), maximum)


class WindowPaginator(CappedPaginator):
    """For search hits: one query takes the ids of the first hits, in result
    order, up to a little past the page; count and page come from that list,
    and only the page's documents are then loaded (by ``fetch``, which keeps
    the list's order). The search engine runs once per page view, and reads
    no more hits than it shows — relevance order included."""

    max_page = 200  # 10,000 hits: enough to page through, bounded for the engine

    def __init__(
        self,
        object_list: Any,
        per_page: int,
        *,
        fetch: Callable[[list[int]], Sequence[Any]],
        page: object = 1,
        limit: int = SEARCH_COUNT_LIMIT,
    ) -> None:
        super().__init__(object_list, per_page, page=page, limit=limit)
        self.fetch = fetch

    def _check_object_list_is_ordered(self) -> None:
        pass  # relevance order can be the engine's own, without ORDER BY

    @cached_property
    def ids(self) -> list[int]:
        return list(cast("QuerySet[Any]", self.object_list).values_list("pk", flat=True)[: self.limit + 1])

    @cached_property
    def count(self) -> int:
        self.more = len(self.ids) > self.limit
        return min(len(self.ids), self.limit)

    def page(self, number: Any) -> Page[Any]:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return Page(self.fetch(self.ids[bottom : bottom + self.per_page]), number, self)


PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50


def page_size(value: object) -> int:
    """``?size=``: one of PAGE_SIZES, else the default (bounds the page's queries)."""
    text = str(value).strip()
    return int(text) if text in {str(s) for s in PAGE_SIZES} else DEFAULT_PAGE_SIZE


def page_links(page: Page[Any], window: int = 2) -> list[int | None]:
    """The page numbers a pager shows: the first, those around the current
    one, and the last when it is known (``None`` marks a gap). With counting
    stopped at its limit the last page is not known: the list ends after
    the window, and the pager says "more"."""
    paginator = page.paginator
    last = paginator.num_pages
    wanted = {1, *range(max(1, page.number - window), min(last, page.number + window) + 1)}
    if not getattr(paginator, "more", False):
        wanted.add(last)
    links: list[int | None] = []
    for number in sorted(wanted):
        if links and links[-1] is not None and number > links[-1] + 1:
            links.append(None)
        links.append(number)
    return links
