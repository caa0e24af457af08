"""Days in the relay's time zone: which day a call counts on, and when it resets.

Every call asks which day it is (and the OpenAI door when the count resets). The
answer changes once a day, so the clock keeps today's date and the Unix time of the
next midnight, and only works them out again once that time has passed: a call costs
one ``time.time()`` instead of building zoned datetimes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._until = 0.0  # Unix time of the next midnight in ``tz``; the fields below hold until then
        self._today = ""
        self._midnight: datetime | None = None

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def _day(self, now: float) -> float:
        if now >= self._until:
            date = datetime.fromtimestamp(now, self.tz).date()
            self._midnight = datetime.combine(date + timedelta(days=1), datetime.min.time(), tzinfo=self.tz)
            self._today = date.isoformat()
            self._until = self._midnight.timestamp()
        return now

    def today(self) -> str:
        self._day(time.time())
        return self._today

    def next_midnight(self) -> datetime:
        self._day(time.time())
        return self._midnight  # type: ignore[return-value]

    def seconds_to_midnight(self) -> int:
        now = self._day(time.time())
        return max(1, int(self._until - now) + 1)
