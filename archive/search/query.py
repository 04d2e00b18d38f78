"""The query language of the search box.

    invoice 2024              all words must occur (anywhere: fields, notes, mail body, attachments)
    "annual report"           a phrase
    -draft  -"old offer"      excluded word / phrase
    invoi*                    a word starting with "invoi"
    from:alice                a field contains the word(s); any field by name or label
    subject:"annual report"   a phrase in a field; -from:bob excludes
    date:2024-01-01..2024-03-31   date range on a date field (inclusive); also
    date:2024  date:2024-03  date:..2024-06-30  date:31.3.2024
    amount:100..250           number range; number:8000..8441 (document numbers)
    published:yes             yes/no fields
    owner:sales               the owner group's name contains "sales"
    notes:call  file:offer    words in the notes / in a file name
    kind:mail                 mails (or kind:document)

A ``name:`` that is not a field is searched as text ("re:", "http://…").

Bounded (issue 11): at most MAX_QUERY_CHARS characters, MAX_TERMS terms once
repeats are merged (each word of a phrase counts), MAX_PREFIX_TERMS prefixes;
dates and numbers within what both databases compare. Beyond that the user
gets a SearchQueryError saying so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from django.db.models import DecimalField, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.db.models.lookups import GreaterThanOrEqual, LessThan, LessThanOrEqual
from django.utils import timezone

from archive.models import DocumentKind, FieldDefinition, FieldType
from archive.search import tokens as tk


class SearchQueryError(ValueError):
    """The query cannot be run as typed; the message says why, for the user."""


# Bounds on what one search may ask (issue 11): a query's cost grows with its
# terms, so a few kilobytes of ``a* a* …`` must not hold a web worker.
MAX_QUERY_CHARS = 1000
MAX_TERMS = 32  # conditions after merging repeats; each word of a phrase counts
# A prefix stands for every word that starts with it: an index reads them all.
MAX_PREFIX_TERMS = 8
# Dates and numbers the databases can compare (MariaDB DATETIME: years 1000-9999).
MIN_YEAR, MAX_YEAR = 1000, 9998
MAX_NUMBER = Decimal(10) ** 20
MAX_DOCUMENT_NUMBER = 2**63 - 1


# Searchable things that are not fields: indexed as field tokens under these names.
PSEUDO_FIELDS = ("notes", "file")
# Fields whose value is a column of Document (see selectors.COLUMN_FIELDS).
_DATE_COLUMNS = {"date": "date", "created": "created", "modified": "modified"}

_TERM = re.compile(
    r"""
    (?P<neg>-)?
    (?:
        (?P<field>[^\W_][\w-]*):(?P<fvalue>"[^"]*"?|[^\s"]\S*)
      | "(?P<phrase>[^"]*)"?
      | (?P<word>\S+)
    )
    """,
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class TextTerm:
    """A full-text condition: ``tokens`` in this order (a phrase when several)."""

    tokens: tuple[str, ...]
    negate: bool = False
    prefix: bool = False  # the single token is a prefix ("invoi*")
    words: tuple[str, ...] = ()  # folded words, for highlighting and word pairs
    field_prefix: str = ""  # set for a field term


@dataclasses.dataclass
class ParsedQuery:
    text: str
    terms: list[TextTerm] = dataclasses.field(default_factory=list)
    filters: list[Q] = dataclasses.field(default_factory=list)
    # A positive range on an indexed column (date, created, modified, number):
    # it may leave few enough documents to search them one by one (backends).
    narrows_by_index: bool = False
    # Positive ranges on the document date, [start, end) with None for an open end.
    date_ranges: list[tuple[dt.datetime | None, dt.datetime | None]] = dataclasses.field(default_factory=list)

    def date_months(self) -> list[str]:
        """The month tokens (``tokens.month_tokens``) of the document dates
        the date ranges leave: empty where they leave no bounded range."""
        starts = [start for start, _end in self.date_ranges if start is not None]
        ends = [end for _start, end in self.date_ranges if end is not None]
        if not starts or not ends:
            return []
        return tk.month_tokens(max(starts), min(ends))

    @property
    def positive_terms(self) -> list[TextTerm]:
        return [t for t in self.terms if not t.negate]

    @property
    def negative_terms(self) -> list[TextTerm]:
        return [t for t in self.terms if t.negate]

    @property
    def highlights(self) -> list[tuple[tuple[str, ...], bool]]:
        """(words, is_prefix) of the positive terms, for snippets."""
        return [(t.words, t.prefix) for t in self.positive_terms if t.words]

    def is_empty(self) -> bool:
        return not self.terms and not self.filters


def _split_terms(text: str) -> Iterable[re.Match[str]]:
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos:  # cannot happen with \S+; be safe
            break
        yield match
        pos = match.end()


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:]
    return value


def _text_term(text: str, *, negate: bool, field: str | None = None) -> TextTerm | None:
    prefix = text.endswith("*") and not text.startswith('"')
    words = tuple(tk.words(text))
    if not words:
        return None
    prefix = prefix and len(words) == 1
    if field is None:
        tokens = (words[0][: tk.MAX_TOKEN_CHARS],) if prefix else tuple(tk.pad(w) for w in words)
    else:
        p = tk.field_prefix(field)
        tokens = tuple(tk.field_token(p, w) for w in words)
        return TextTerm(tokens=tokens, negate=negate, prefix=prefix, words=words, field_prefix=p)
    return TextTerm(tokens=tokens, negate=negate, prefix=prefix, words=words)


def parse_query(text: str, definitions: Iterable[FieldDefinition]) -> ParsedQuery:
    """The query, its repeated terms merged. Raises SearchQueryError, also for
    a query longer than MAX_QUERY_CHARS or with more than MAX_TERMS terms."""
    if len(text) > MAX_QUERY_CHARS:
        raise SearchQueryError(
            f"The search is {len(text):,} characters long; at most {MAX_QUERY_CHARS:,} are allowed — narrow it."
        )
    fields = _field_lookup(definitions)
    query = ParsedQuery(text=text)
    seen_conditions: set[tuple[str, str, bool]] = set()
    for match in _split_terms(text):
        negate = bool(match.group("neg"))
        if match.group("field") is not None:
            field = fields.get(match.group("field").casefold())
            value = _unquote(match.group("fvalue"))
            if field is not None and value.strip():
                key = (field.name, value.strip().casefold(), negate)
                if key not in seen_conditions:  # date:2024 date:2024 is one condition
                    seen_conditions.add(key)
                    _add_field_condition(
                        query, field, value.strip(), negate=negate, quoted=match.group("fvalue").startswith('"')
                    )
                continue
            raw = match.group(0)[1:] if negate else match.group(0)
            term = _text_term(raw, negate=negate)
        elif match.group("phrase") is not None:
            term = _text_term(match.group("phrase"), negate=negate)
        else:
            term = _text_term(match.group("word"), negate=negate)
        if term is not None:
            query.terms.append(term)
    query.terms = list(dict.fromkeys(query.terms))  # "a* a* a*" is one term
    count = len(query.filters) + sum(len(t.words) for t in query.terms)
    if count > MAX_TERMS:
        raise SearchQueryError(
            f"The search has {count:,} terms (each word of a phrase counts); at most {MAX_TERMS} are allowed"
            " — narrow it."
        )
    prefixes = sum(t.prefix for t in query.terms)
    if prefixes > MAX_PREFIX_TERMS:
        raise SearchQueryError(
            f"The search has {prefixes} words ending in *; at most {MAX_PREFIX_TERMS} are allowed — narrow it."
        )
    return query


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    label: str
    type: str


def _field_lookup(definitions: Iterable[FieldDefinition]) -> dict[str, _Field]:
    lookup: dict[str, _Field] = {}
    for name in (*PSEUDO_FIELDS, "kind"):
        lookup[name] = _Field(name, name, FieldType.TEXT)
    for d in definitions:
        f = _Field(d.name, d.label, d.type)
        lookup.setdefault(d.label.casefold().replace(" ", ""), f)
        lookup[d.name.casefold()] = f  # a name wins over a label or a pseudo field
    return lookup


def _add_field_condition(query: ParsedQuery, field: _Field, value: str, *, negate: bool, quoted: bool) -> None:
    condition: Q | None
    if field.name == "kind":
        kinds = {k.value: k.value for k in DocumentKind} | {k.label.casefold(): k.value for k in DocumentKind}
        kind = kinds.get(value.casefold())
        if kind is None:
            raise SearchQueryError(f"kind: is {' or '.join(k.value for k in DocumentKind)}, not {value!r}")
        condition = Q(kind=kind)
    elif field.name == "owner":
        condition = Q(owner_group__name__icontains=value)
    elif field.name == "number":
        condition = _number_condition("pk", value, field.label, integer=True)
        query.narrows_by_index |= not negate
    elif field.type == FieldType.DATE or field.name in _DATE_COLUMNS:
        start, end = _date_bounds(value)
        condition = _date_condition(field, start, end)
        query.narrows_by_index |= not negate and field.name in _DATE_COLUMNS
        if not negate and field.name == "date":
            query.date_ranges.append((_aware(start) if start else None, _aware(end) if end else None))
    elif field.type == FieldType.YESNO:
        condition = _yesno_condition(field, value)
    elif field.type == FieldType.NUMBER and ".." in value and not quoted:
        condition = _number_condition(field.name, value, field.label, integer=False)
    else:
        if field.type == FieldType.NUMBER:
            value = _normalise_number(value) or value
        term = _text_term(value, negate=negate, field=field.name)
        if term is not None:
            query.terms.append(term)
        return
    query.filters.append(~condition if negate else condition)


# --- dates -------------------------------------------------------------------

_ISO = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
_SWISS = re.compile(r"^(?:(\d{1,2})\.)?(\d{1,2})\.(\d{4})$")  # 31.3.2024 or 3.2024


def _date_span(text: str) -> tuple[dt.date, dt.date]:
    """First day and the day after the last day that ``text`` denotes."""
    text = text.strip()
    year: int
    month: int | None
    day: int | None
    if m := _ISO.match(text):
        year, month, day = int(m[1]), int(m[2]) if m[2] else None, int(m[3]) if m[3] else None
    elif m := _SWISS.match(text):
        year, month, day = int(m[3]), int(m[2]), int(m[1]) if m[1] else None
    else:
        raise SearchQueryError(f"{text!r} is not a date (YYYY-MM-DD, YYYY-MM, YYYY or DD.MM.YYYY)")
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise SearchQueryError(f"{text!r}: the year must be between {MIN_YEAR} and {MAX_YEAR}")
    try:
        if month is None:
            return dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
        if day is None:
            start = dt.date(year, month, 1)
            return start, (start + dt.timedelta(days=32)).replace(day=1)
        start = dt.date(year, month, day)
        return start, start + dt.timedelta(days=1)
    except ValueError:
        raise SearchQueryError(f"{text!r} is not a valid date") from None


def _date_bounds(value: str) -> tuple[dt.date | None, dt.date | None]:
    if ".." in value:
        low, high = (part.strip() for part in value.split("..", 1))
        start = _date_span(low)[0] if low else None
        end = _date_span(high)[1] if high else None
        if start is None and end is None:
            raise SearchQueryError("a date range needs at least one end: 2024-01-01..2024-03-31")
        return start, end
    return _date_span(value)


def _aware(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time()), timezone.get_current_timezone())


def _date_condition(field: _Field, start: dt.date | None, end: dt.date | None) -> Q:
    q = Q()
    if field.name in _DATE_COLUMNS:
        column = _DATE_COLUMNS[field.name]
        if start is not None:
            q &= Q(**{f"{column}__gte": _aware(start)})
        if end is not None:
            q &= Q(**{f"{column}__lt": _aware(end)})
        return q
    # A date field in ``values`` holds an ISO date or datetime: compare as text.
    key = KeyTextTransform(field.name, "values")
    if start is not None:
        q &= Q(GreaterThanOrEqual(key, start.isoformat()))
    if end is not None:
        q &= Q(LessThan(key, end.isoformat()))
    return q


# --- numbers and yes/no ------------------------------------------------------


def _normalise_number(text: str) -> str | None:
    try:
        number = Decimal(text.strip().replace("'", ""))
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number.adjusted()) > 100:
        return None  # 1e999999999 would be a billion digits as text
    return format(number.normalize(), "f")  # as archive.services stores it


def _number_condition(name: str, value: str, label: str, *, integer: bool) -> Q:
    low, sep, high = value.partition("..")
    bounds: list[Decimal | None] = []
    for part in (low, high) if sep else (low,):
        part = part.strip()
        if not part:
            bounds.append(None)
            continue
        normal = _normalise_number(part)
        if normal is None or (integer and not normal.lstrip("-").isdigit()):
            raise SearchQueryError(f"{label}: {part!r} is not a number")
        bound = Decimal(normal)
        if abs(bound) >= (MAX_DOCUMENT_NUMBER if integer else MAX_NUMBER):
            raise SearchQueryError(f"{label}: {part!r} is out of range")
        bounds.append(bound)
    if name == "pk":
        if not sep and bounds[0] is not None:
            return Q(pk=int(bounds[0]))
        q = Q()
        if bounds[0] is not None:
            q &= Q(pk__gte=int(bounds[0]))
        if bounds[1] is not None:
            q &= Q(pk__lte=int(bounds[1]))
        return q
    number = Cast(KeyTextTransform(name, "values"), DecimalField(max_digits=30, decimal_places=8))
    q = Q()
    if bounds[0] is not None:
        q &= Q(GreaterThanOrEqual(number, bounds[0]))
    if len(bounds) > 1 and bounds[1] is not None:
        q &= Q(LessThanOrEqual(number, bounds[1]))
    return q


_YES = {"yes", "true", "1", "on", "ja", "oui", "si", "y"}
_NO = {"no", "false", "0", "off", "nein", "non", "n"}


def _yesno_condition(field: _Field, value: str) -> Q:
    v = value.casefold()
    if v in _YES:
        return Q(**{f"values__{field.name}": True})
    if v in _NO:
        return ~Q(**{f"values__{field.name}": True})
    raise SearchQueryError(f"{field.label}: use yes or no, not {value!r}")
