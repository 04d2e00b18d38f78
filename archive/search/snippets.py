"""Snippets: the passage of a hit that best shows why it matched, with the
matching words marked. Built in Python from the stored texts (the index holds
normalised tokens only), for the documents of one result page — which the
caller took from the access-filtered result, so a snippet never shows text of
a document the user cannot open.

Everything is HTML-escaped; the only markup is ``<mark>``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from django.db.models.functions import Substr
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from archive.models import Document, DocumentFile, FieldDefinition, FieldType
from archive.search import tokens as tk

# Scan this much of each text for a passage (a hit deeper in a huge attachment
# still matches; it just gets no snippet from there).
SCAN_CHARS = 60_000
WINDOW_WORDS = 30
LEAD_WORDS = 8


@dataclasses.dataclass(frozen=True)
class Snippet:
    source: str  # "Mail", a file name, "Notes" or a field label
    html: SafeString


Highlight = tuple[tuple[str, ...], bool]  # (folded words, last word is a prefix)


def _word_matches(word: str, wanted: str, prefix: bool) -> bool:
    return word.startswith(wanted) if prefix else word == wanted


def _find(
    words: Sequence[str], positions: dict[str, list[int]], highlight: Highlight, limit: int = 200
) -> list[tuple[int, int]]:
    """(start, length) of each occurrence of a highlight's word sequence;
    ``positions``: where each word occurs in ``words``."""
    wanted, prefix = highlight
    n = len(wanted)
    if n == 1 and prefix:
        starts = sorted(i for w, at in positions.items() if w.startswith(wanted[0]) for i in at)
    else:
        starts = positions.get(wanted[0], [])
    found = []
    for i in starts:
        if i + n <= len(words) and all(
            _word_matches(words[i + k], wanted[k], prefix and k == n - 1) for k in range(1, n)
        ):
            found.append((i, n))
            if len(found) >= limit:
                break
    return found


def _best_window(hits: list[tuple[int, int, int]], owner: list[int]) -> tuple[int, int]:
    """(first written word, number of distinct highlights) of the window of
    WINDOW_WORDS words, starting LEAD_WORDS before a hit, that shows the most
    distinct highlights; the first such window wins. ``hits`` sorted by word index.

    One sweep (linear after sorting): as the window moves right, a hit enters
    once its last word fits and leaves once its first word falls off the front."""
    spans = [(owner[j], owner[j + n - 1], hid) for j, n, hid in hits]
    by_end = sorted(range(len(spans)), key=lambda k: spans[k][1])
    entered = left = 0
    inside = [False] * len(spans)
    gone = [False] * len(spans)
    counts: dict[int, int] = {}
    best_start, best_score = 0, -1
    for first, _, _ in spans:  # window starts are non-decreasing: hits are sorted
        start = max(0, first - LEAD_WORDS)
        while entered < len(by_end) and spans[by_end[entered]][1] < start + WINDOW_WORDS:
            k = by_end[entered]
            entered += 1
            if not gone[k]:
                inside[k] = True
                counts[spans[k][2]] = counts.get(spans[k][2], 0) + 1
        while left < len(spans) and spans[left][0] < start:
            gone[left] = True
            if inside[left]:
                inside[left] = False
                hid = spans[left][2]
                counts[hid] -= 1
                if not counts[hid]:
                    del counts[hid]
            left += 1
        if len(counts) > best_score:
            best_start, best_score = start, len(counts)
    return best_start, best_score


def passage(text: str, highlights: list[Highlight]) -> tuple[int, SafeString] | None:
    """(number of distinct highlights shown, HTML) of the best passage, or None."""
    text = text[:SCAN_CHARS]
    highlights = list(dict.fromkeys(highlights))  # a repeated term is marked once
    folded = tk.fold(text)
    if not any(words[0] in folded for words, _ in highlights):
        return None  # cheap: most sources of a hit do not have the words
    spans = list(tk.word_spans(text))
    # One entry per folded word, remembering the written word it came from.
    words: list[str] = []
    owner: list[int] = []
    for index, (_, _, parts) in enumerate(spans):
        words += parts
        owner += [index] * len(parts)
    positions: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        positions.setdefault(word, []).append(i)
    hits: list[tuple[int, int, int]] = []  # (word index, length, highlight id)
    for hid, highlight in enumerate(highlights):
        hits += [(i, n, hid) for i, n in _find(words, positions, highlight)]
    if not hits:
        return None
    hits.sort()
    best_start, best_score = _best_window(hits, owner)
    end = min(len(spans), best_start + WINDOW_WORDS)
    marked = set()
    for j, n, _ in hits:
        marked.update(owner[j : j + n])
    # The punctuation glued to the first word ("<b>team"), not the line before.
    gap = text[spans[best_start - 1][1] if best_start else 0 : spans[best_start][0]]
    out = ["…"] if best_start > 0 else []
    plain = [gap.split()[-1] if gap.split() and not gap[-1].isspace() else ""]
    pos = spans[best_start][0]
    for index in range(best_start, end):
        s, e, _ = spans[index]
        gap = text[pos:s] if index > best_start else ""
        plain.append(gap if len(gap) <= 40 else " … ")
        if index in marked:  # escape runs of text at once, mark the words
            out += [escape("".join(plain)), "<mark>", escape(text[s:e]), "</mark>"]
            plain = []
        else:
            plain.append(text[s:e])
        pos = e
    # The punctuation right after the last word ("alice@example.com>"), not the next line.
    tail = text[pos : spans[end][0]] if end < len(spans) else text[pos : pos + 40]
    plain.append(tail.split()[0] if tail[:1].strip() and tail.split() else "")
    out.append(escape("".join(plain)))
    if end < len(spans):
        out.append(" …")
    html = "".join(out)
    return best_score, mark_safe(" ".join(html.split()))  # noqa: S308 - every piece is escaped


def _sources(
    document: Document, files: Iterable[tuple[str, str]], fields: dict[str, FieldDefinition]
) -> list[tuple[str, str]]:
    sources = [(name, text) for name, text in files if text]
    if document.notes:
        sources.append(("Notes", document.notes))
    for name, value in document.values.items():
        field = fields.get(name)
        if value in (None, "") or isinstance(value, bool):
            continue
        if field is not None and field.type in (FieldType.DATE, FieldType.YESNO):
            continue
        sources.append((field.label if field else name, str(value)))
    return sources


def snippets_for(
    documents: Sequence[Document], highlights: list[Highlight], definitions: Iterable[FieldDefinition]
) -> dict[int, Snippet]:
    highlights = list(dict.fromkeys(highlights))
    if not highlights or not documents:
        return {}
    fields = {f.name: f for f in definitions}
    texts: dict[int, list[tuple[str, str]]] = {d.pk: [] for d in documents}
    rows = (
        DocumentFile.objects.filter(document_id__in=list(texts))
        .exclude(text="")
        .annotate(head=Substr("text", 1, SCAN_CHARS))
        .values_list("document_id", "name", "role", "head")
        .order_by("document_id", "role", "-version", "id")
    )
    for doc_id, name, role, head in rows:
        label = "Mail" if role == "original" and name.lower().endswith(".eml") else name
        texts[doc_id].append((label, head))
    result = {}
    for document in documents:
        best: tuple[int, str, SafeString] | None = None
        for source, text in _sources(document, texts[document.pk], fields):
            found = passage(text, highlights)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], source, found[1])
                if found[0] == len(highlights):
                    break
        if best is not None:
            result[document.pk] = Snippet(source=best[1], html=best[2])
    return result
