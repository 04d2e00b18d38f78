"""How common index tokens are, estimated from a sample of index entries.

InnoDB reads the whole posting list of every term of a query, so a word in
30 % of a million documents costs more than half a second whatever else the
query says. With these figures the MariaDB search (``planner.py``) can read
documents newest first instead, or check an excluded common word on the row.

``refresh`` runs daily (Celery beat) and at the end of ``manage.py reindex``;
without figures the search simply always uses the full-text index.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Max, Min, Sum

from archive.models import Document, SearchEntry, SearchStatistic

SAMPLE_DOCUMENTS = 10_000
CHUNK = 100  # consecutive entries per random seek
MIN_COUNT = 10  # a token in fewer sampled documents is "rare" (< 0.1 % at 10,000)
TOTAL = "#documents"
GROUP = "#group:"


def refresh(sample: int = SAMPLE_DOCUMENTS, rng: random.Random | None = None) -> int:
    """Recompute the figures; returns how many tokens are common enough to keep."""
    rng = rng or random.Random()
    total = SearchEntry.objects.count()
    bounds = SearchEntry.objects.aggregate(lo=Min("document_id"), hi=Max("document_id"))
    counts: Counter[str] = Counter()
    seen: set[int] = set()
    if total:
        attempts = 0
        while len(seen) < min(sample, total) and attempts < 10 * (sample // CHUNK + 1):
            attempts += 1
            start = rng.randint(bounds["lo"], bounds["hi"])
            chunk = SearchEntry.objects.filter(document_id__gte=start).order_by("document_id")
            for number, text in chunk.values_list("document_id", "text")[:CHUNK]:
                if number not in seen:
                    seen.add(number)
                    counts.update(set(text.split()))
    rows = [
        SearchStatistic(token=token, fraction=n / len(seen))
        for token, n in counts.items()
        if n >= MIN_COUNT and len(token) <= 100
    ]
    if total:
        rows.append(SearchStatistic(token=TOTAL, fraction=float(total)))
        for group_id, n in Document.objects.values_list("owner_group_id").annotate(n=Count("pk")):
            rows.append(SearchStatistic(token=f"{GROUP}{group_id}", fraction=n / total))
    with transaction.atomic():
        SearchStatistic.objects.all().delete()
        SearchStatistic.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


@dataclasses.dataclass(frozen=True)
class Estimates:
    total: int  # documents in the index (0: no figures)
    visible: float  # share of them the user may open
    fractions: dict[str, float]
    prefixes: dict[str, float]

    def fraction(self, token: str, unknown: float) -> float:
        return self.fractions.get(token, unknown)

    def prefix(self, prefix: str, unknown: float) -> float:
        """Share of documents with a token of this prefix (at most all)."""
        return min(1.0, self.prefix_postings(prefix, unknown))

    def prefix_postings(self, prefix: str, unknown: float) -> float:
        """Postings per document InnoDB reads for the prefix: every token's
        list (``a*`` reads "and", "archive", "a__" … — several per document)."""
        return self.prefixes.get(prefix) or unknown


def lookup(tokens: Iterable[str], prefixes: Iterable[str], group_ids: list[int] | None) -> Estimates:
    """Figures for these tokens and prefixes; ``group_ids`` None: sees everything."""
    wanted = {*tokens, TOTAL, *(f"{GROUP}{g}" for g in group_ids or ())}
    found = dict(SearchStatistic.objects.filter(token__in=wanted).values_list("token", "fraction"))
    total = int(found.pop(TOTAL, 0))
    visible = 1.0 if group_ids is None else sum(found.pop(f"{GROUP}{g}", 0.0) for g in group_ids)
    prefix_sums = {
        p: SearchStatistic.objects.filter(token__startswith=p)
        .exclude(token__startswith="#")
        .aggregate(s=Sum("fraction"))["s"]
        or 0.0
        for p in set(prefixes)
    }
    return Estimates(total, visible, found, prefix_sums)
