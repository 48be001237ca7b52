"""The dashboard's numbers for a period: per hour or day, rates, top bounces, suppressions.

Each set is one query: the per-slot counts and the two top-bounce lists come from
:mod:`~django_cloudmails.rollup` (exact, and cheap at any table size on PostgreSQL);
the suppressions from their ``created_at`` index. A delivery counts in the hour or day
it was created; its fate (delivered, bounced...) is where it stands now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncDay, TruncHour
from django.utils import dateformat, timezone
from django.utils.translation import gettext_lazy as _

from .. import rollup
from ..conf import app_settings
from ..models import Suppression

HOURLY = "hour"
DAILY = "day"
#: Time spent at most rolling closed slots up per dashboard request.
MATERIALIZE_BUDGET = 0.2
TOP = 10


def percent(value: float) -> str:
    """0.0213 -> "2.13%" (as many decimals as a small rate needs, at most 3)."""
    for decimals in (2, 3):
        text = f"{value * 100:.{decimals}f}"
        if float(text) or value == 0:
            break
    return f"{float(text):g}%"


@dataclass(frozen=True)
class Rate:
    key: str
    label: Any
    numerator: int
    denominator: int
    base: Any
    #: Above this the dashboard warns (None: never).
    threshold: float | None = None
    setting: str = ""

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    @property
    def percent(self) -> str:
        """The rate as a percentage, "-" without a denominator."""
        value = self.value
        return "-" if value is None else percent(value)

    @property
    def threshold_percent(self) -> str:
        return "-" if self.threshold is None else percent(self.threshold)

    @property
    def alarming(self) -> bool:
        value = self.value
        return self.threshold is not None and value is not None and value > self.threshold


@dataclass
class Bucket:
    key: Any
    label: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Stats:
    period: rollup.Period
    granularity: str
    buckets: list[Bucket]
    totals: dict[str, int]
    rates: list[Rate]
    top_reasons: list[tuple[str, int]]
    top_domains: list[tuple[str, int]]
    suppressions_total: int
    suppressions_added: list[Bucket]
    suppressions_by_reason: list[tuple[Any, int]]

    @property
    def warnings(self) -> list[Rate]:
        return [rate for rate in self.rates if rate.alarming]


def bucket_keys(period: rollup.Period, granularity: str, zone: tzinfo) -> list[tuple[Any, str]]:
    """Every bucket of the period, in order: (key, label). An hour's key is the UTC
    moment it starts (exact across daylight saving changes); a day's, its local date."""
    keys: list[tuple[Any, str]] = []
    if granularity == HOURLY:
        moment = period.start.astimezone(dt_timezone.utc)
        while moment < period.end:
            keys.append((moment, dateformat.format(timezone.localtime(moment, zone), "H:i")))
            moment += timedelta(hours=1)
        return keys
    day = timezone.localtime(period.start, zone).date()
    last = timezone.localtime(period.end - timedelta(microseconds=1), zone).date()
    while day <= last:
        keys.append((day, dateformat.format(day, "j M")))
        day += timedelta(days=1)
    return keys


def bucket_of(moment: datetime, granularity: str, zone: tzinfo) -> Any:
    """The key of the bucket holding ``moment`` (see :func:`bucket_keys`)."""
    local = timezone.localtime(moment, zone)
    if granularity == HOURLY:
        return local.replace(minute=0, second=0, microsecond=0).astimezone(dt_timezone.utc)
    return local.date()


def rates(totals: dict[str, int]) -> list[Rate]:
    sent, delivered = totals["sent"], totals["delivered"]
    settings = app_settings
    return [
        Rate("delivery", _("Delivery rate"), delivered, sent, _("of sent")),
        Rate(
            "bounce",
            _("Bounce rate"),
            totals["bounced"],
            sent,
            _("of sent"),
            settings.bounce_rate_warning,
            "BOUNCE_RATE_WARNING",
        ),
        Rate(
            "complaint",
            _("Complaint rate"),
            totals["complained"],
            delivered,
            _("of delivered"),
            settings.complaint_rate_warning,
            "COMPLAINT_RATE_WARNING",
        ),
        Rate("open", _("Open rate"), totals["opened"], delivered, _("of delivered")),
        Rate("click", _("Click rate"), totals["clicked"], delivered, _("of delivered")),
    ]


def gather(period: rollup.Period, granularity: str) -> Stats:
    """Every number of the dashboard for ``period`` (after rolling up what it can)."""
    zone = timezone.get_current_timezone()
    rollup.materialize(budget=MATERIALIZE_BUDGET)
    keys = bucket_keys(period, granularity, zone)
    buckets = {
        key: Bucket(key, label, dict.fromkeys(rollup.COUNTER_NAMES, 0)) for key, label in keys
    }
    slots = rollup.slot_counts(period)
    for slot, counts in slots:
        bucket = buckets.get(bucket_of(rollup.slot_moment(slot), granularity, zone))
        if bucket is not None:
            for name, value in counts.items():
                bucket.counts[name] += value
    totals = rollup.totals(slots)
    added = _suppressions_added(period, granularity, zone, keys)
    return Stats(
        period=period,
        granularity=granularity,
        buckets=list(buckets.values()),
        totals=totals,
        rates=rates(totals),
        top_reasons=rollup.top_bounces(period, "reason", limit=TOP),
        top_domains=rollup.top_bounces(period, "domain", limit=TOP),
        suppressions_total=Suppression.objects.count(),
        suppressions_added=added,
        suppressions_by_reason=by_reason(added),
    )


def _suppressions_added(
    period: rollup.Period, granularity: str, zone: tzinfo, keys: list[tuple[Any, str]]
) -> list[Bucket]:
    """Suppressions added per bucket and reason, in one query."""
    trunc = TruncHour if granularity == HOURLY else TruncDay
    rows = (
        Suppression.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
        .annotate(bucket=trunc("created_at", tzinfo=zone))
        .values("bucket", "reason")
        .annotate(added=Count("id"))
        .order_by()
    )
    buckets = {key: Bucket(key, label, {}) for key, label in keys}
    for row in rows:
        bucket = buckets.get(bucket_of(row["bucket"], granularity, zone))
        if bucket is not None:
            bucket.counts[row["reason"]] = bucket.counts.get(row["reason"], 0) + row["added"]
    return list(buckets.values())


def by_reason(buckets: list[Bucket]) -> list[tuple[Any, int]]:
    """Suppressions added over the period, per reason, most first."""
    totals: dict[str, int] = {}
    for bucket in buckets:
        for reason, count in bucket.counts.items():
            totals[reason] = totals.get(reason, 0) + count
    labels = dict(Suppression.Reason.choices)
    return sorted(
        ((labels.get(reason, reason), count) for reason, count in totals.items()),
        key=lambda item: -item[1],
    )


def day_start(day: date, zone: tzinfo) -> datetime:
    """Local midnight of ``day`` as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, datetime.min.time()), zone)
