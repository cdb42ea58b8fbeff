"""Calendar windows in the policy's timezone: keys for running totals and reset instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["FUND_WINDOW", "WINDOWS", "WindowKeys", "epoch_to_iso", "iso_utc", "window_keys"]

#: Window names in the order refusals and status list them.
WINDOWS = ("day", "week", "month", "lifetime")
#: The funding window (policy ``fund_daily``): a calendar day like ``day``, but its own running total.
FUND_WINDOW = "fund_day"


@dataclass(frozen=True)
class WindowKeys:
    """The window each calendar period is in at one instant, and when each resets (UTC)."""

    day: str
    week: str
    month: str
    resets: dict[str, datetime | None]

    def key(self, window: str) -> str:
        return {"day": self.day, "week": self.week, "month": self.month, "lifetime": "all"}[window]


def _midnight(d: date, zone: ZoneInfo) -> datetime:
    # A local midnight that does not exist (DST gap) resolves forward through fold handling.
    return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)


def window_keys(now_epoch: float, zone: ZoneInfo) -> WindowKeys:
    """Keys of the day/week/month containing ``now_epoch`` in ``zone``; weeks start Monday."""
    local = datetime.fromtimestamp(now_epoch, tz=zone)
    today = local.date()
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return WindowKeys(
        day=today.isoformat(),
        week=monday.isoformat(),
        month=f"{today.year:04d}-{today.month:02d}",
        resets={
            "day": _midnight(today + timedelta(days=1), zone),
            "week": _midnight(monday + timedelta(days=7), zone),
            "month": _midnight(next_month, zone),
            "lifetime": None,
        },
    )


def iso_utc(moment: datetime | None) -> str | None:
    """``2026-11-25T00:00:00Z`` style."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_to_iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return iso_utc(datetime.fromtimestamp(epoch, tz=UTC))
