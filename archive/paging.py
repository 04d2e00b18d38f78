"""A paginator that stops counting: ``COUNT(*)`` over a million InnoDB rows
reads them all (InnoDB keeps no row count), which would cost the table view
more than the page itself. Counting stops a little past the page asked for;
beyond that the table says "more than N"."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.utils.functional import cached_property

COUNT_LIMIT = 10_000


class CappedPaginator(Paginator):
    def __init__(self, object_list: Any, per_page: int, *, page: object = 1,
                 limit: int = COUNT_LIMIT) -> None:
        super().__init__(object_list, per_page)
        try:
            wanted = max(1, int(str(page)))
        except ValueError:
            wanted = 1
        # Always count past the requested page, so that "next" stays correct there.
        self.limit = max(limit, (wanted + 1) * per_page)

    @cached_property
    def count(self) -> int:
        # Without ORDER BY: the database may count along any index, and stop.
        counted = self.object_list.order_by()[: self.limit + 1].count()
        self.more = counted > self.limit
        return min(counted, self.limit)

    more = False  # True once counting stopped at the limit
