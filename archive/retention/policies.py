"""Which policy applies to a document and when its retention ends (the rule:
see the package docstring). ``retentions`` works in bulk — the policies once,
the mail locations of all documents in one query — and ``retention_end`` is
the same for one document."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

from django.apps import apps
from django.db.models import Q
from django.utils import timezone

from archive.models import Document

from .models import POLICY_ORDER, PRESET_YEARS, CountFrom, Preset, RetentionPolicy

# (source id, mailbox lower-cased, folder) of every place a mail was seen.
Location = tuple[int, str, str]


@dataclasses.dataclass(frozen=True)
class Retention:
    policy: RetentionPolicy | None  # None: no policy matches, kept forever
    end: dt.date | None  # the last day to keep; None: forever

    def expired(self, today: dt.date) -> bool:
        return self.end is not None and self.end < today


FOREVER = Retention(None, None)


def base_date(document: Document) -> dt.date:
    """The mail date (the "date" field), or the archive time without one, as a local date."""
    moment = document.date or document.created
    return timezone.localtime(moment).date() if timezone.is_aware(moment) else moment.date()


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole months, the day clamped to the month's length (31 Jan + 1 → 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def duration(policy: RetentionPolicy) -> tuple[int, int, int, CountFrom] | None:
    """(years, months, days, counted from) of a policy; None to keep forever."""
    if policy.preset == Preset.FOREVER:
        return None
    if policy.preset in PRESET_YEARS:
        return PRESET_YEARS[Preset(policy.preset)], 0, 0, CountFrom.END_OF_YEAR
    return policy.years, policy.months, policy.days, CountFrom(policy.count_from)


def end_date(policy: RetentionPolicy, base: dt.date) -> dt.date | None:
    spec = duration(policy)
    if spec is None:
        return None
    years, months, days, count_from = spec
    start = dt.date(base.year, 12, 31) if count_from == CountFrom.END_OF_YEAR else base
    try:
        return add_months(start, years * 12 + months) + dt.timedelta(days=days)
    except (ValueError, OverflowError):  # past year 9999 (a mail dated 9999): the last day there is
        return dt.date.max


def active_policies() -> list[RetentionPolicy]:
    """Enabled policies in the order they are tried (the default last)."""
    return list(RetentionPolicy.objects.filter(enabled=True).select_related("field").order_by(*POLICY_ORDER))


def locations_of(numbers: Iterable[int]) -> dict[int, set[Location]]:
    """Where each mail document was seen (mailsources' locations; read only)."""
    location_model = apps.get_model("mailsources", "MailLocation")
    found: dict[int, set[Location]] = {}
    rows = location_model.objects.filter(mail__document_id__in=list(numbers)).values_list(
        "mail__document_id", "source_id", "mailbox", "folder"
    )
    for number, source_id, mailbox, folder in rows:
        found.setdefault(number, set()).add((source_id, mailbox.lower(), folder))
    return found


def matches(policy: RetentionPolicy, document: Document, locations: set[Location]) -> bool:
    if policy.is_default:
        return True
    if policy.kind and document.kind != policy.kind:
        return False
    if policy.field is not None and str(document.values.get(policy.field.name, "")) != policy.field_value:
        return False
    if policy.scoped_by_location:
        return any(_location_matches(policy, location) for location in locations)
    return True


def _location_matches(policy: RetentionPolicy, location: Location) -> bool:
    source_id, mailbox, folder = location
    return (
        (policy.source_id is None or policy.source_id == source_id)
        and (not policy.mailbox or policy.mailbox.lower() == mailbox)
        and (not policy.folder or policy.folder == folder)
    )


def retentions(documents: Sequence[Document], policies: list[RetentionPolicy] | None = None) -> dict[int, Retention]:
    """The retention of each document, by number: two queries however many documents."""
    if policies is None:
        policies = active_policies()
    needs_locations = any(p.scoped_by_location and not p.is_default for p in policies)
    locations = locations_of(d.pk for d in documents) if needs_locations and documents else {}
    result: dict[int, Retention] = {}
    for document in documents:
        policy = next((p for p in policies if matches(p, document, locations.get(document.pk, set()))), None)
        result[document.pk] = FOREVER if policy is None else Retention(policy, end_date(policy, base_date(document)))
    return result


def retention_end(document: Document) -> dt.date | None:
    """The last day ``document`` must be kept; None: forever. The one function for one document."""
    return retentions([document])[document.pk].end


def today(now: dt.datetime | None = None) -> dt.date:
    return timezone.localtime(now or timezone.now()).date()


def possibly_expired(policies: list[RetentionPolicy], now: dt.datetime) -> Q | None:
    """A filter no expired document fails (to skip the young ones): the base
    date lies before today minus the shortest duration. None: nothing can expire."""
    shortest = [spec for p in policies if (spec := duration(p)) is not None]
    if not shortest:
        return None
    lower_bound_days = min(years * 365 + months * 28 + days for years, months, days, _ in shortest)
    # One day of slack: the base date is a local date, ``now`` a moment.
    cutoff = now - dt.timedelta(days=max(lower_bound_days - 1, 0))
    return Q(date__lt=cutoff) | Q(date__isnull=True, created__lt=cutoff)
