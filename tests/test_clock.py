"""The clock keeps today's date until the next midnight in its time zone, then moves on."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from lightrelay import clock as clock_module
from lightrelay.clock import Clock


def test_the_day_turns_at_midnight_in_the_relays_time_zone(monkeypatch):
    tz = ZoneInfo("Asia/Shanghai")
    midnight = datetime(2026, 3, 2, tzinfo=tz).timestamp()
    now = [midnight - 2.5]
    monkeypatch.setattr(clock_module.time, "time", lambda: now[0])
    c = Clock(tz)
    assert c.today() == "2026-03-01"
    assert c.seconds_to_midnight() == 3
    assert c.next_midnight() == datetime(2026, 3, 2, tzinfo=tz)
    now[0] = midnight + 0.5
    assert c.today() == "2026-03-02"
    assert c.next_midnight() == datetime(2026, 3, 3, tzinfo=tz)
    assert c.seconds_to_midnight() == 86400


def test_a_day_of_23_hours_when_the_clocks_go_forward(monkeypatch):
    tz = ZoneInfo("America/New_York")  # 2026-03-08 has 23 hours there
    start = datetime(2026, 3, 8, tzinfo=tz).timestamp()
    monkeypatch.setattr(clock_module.time, "time", lambda: start + 1)
    c = Clock(tz)
    assert c.today() == "2026-03-08"
    assert c.seconds_to_midnight() == 23 * 3600
