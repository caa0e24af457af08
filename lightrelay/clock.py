"""Days in the relay's time zone: which day a call counts on, and when it resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def today(self) -> str:
        return self.now().date().isoformat()

    def next_midnight(self) -> datetime:
        now = self.now()
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=self.tz)

    def seconds_to_midnight(self) -> int:
        return max(1, int((self.next_midnight() - self.now()).total_seconds()) + 1)
