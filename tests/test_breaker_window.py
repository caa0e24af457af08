"""The breaker takes a channel out on evidence, not on one error: failures counted in a time window, with a
failure ratio; the reason it is out is kept; recovery by timed probe as before."""

from __future__ import annotations

from lightrelay.routing import Router

ROW = {"type": "openai", "base_url": "x", "api_key_enc": None, "models": {"m": "m"}, "weight": 1, "enabled": True,
       "timeout": None}


def router(monkeypatch, now: list[float], **kw) -> Router:
    monkeypatch.setattr("lightrelay.routing.time.monotonic", lambda: now[0])
    r = Router(make_provider=lambda row: object(), default_models=(), local_auto=False,
               **{"failures_to_cool": 3, "cooldown": 30, "window": 60, "ratio": 0.5, **kw})
    r.load([{**ROW, "name": "a", "priority": 2}, {**ROW, "name": "b", "priority": 1}])
    return r


def test_failures_spread_beyond_the_window_do_not_open(monkeypatch):
    now = [1000.0]
    r = router(monkeypatch, now)
    for _ in range(5):
        r.failed("a", "upstream answered 500")
        now[0] += 31  # two at most within any 60 s
    assert r.states()["a"]["state"] == "closed"
    assert r.snapshot()["a"]["reason"] == "upstream answered 500"


def test_failures_among_many_successes_do_not_open(monkeypatch):
    now = [1000.0]
    r = router(monkeypatch, now)
    r.failed("a")
    for _ in range(10):
        r.succeeded("a")
    r.failed("a")
    r.failed("a")  # 3 failures in the window, but 3 of 13 calls
    assert r.states()["a"]["state"] == "closed" and r.states()["a"]["failures"] == 3
    for _ in range(8):
        r.failed("a")  # now 11 of 21
    assert r.states()["a"]["state"] == "open"
    assert [x.channel for x in r.routes("m")] == ["b"]


def test_enough_failures_in_the_window_open_then_probe_closes(monkeypatch):
    now = [1000.0]
    r = router(monkeypatch, now)
    for i in range(3):
        r.failed("a", f"upstream answered 50{i}")
        now[0] += 10
    view = r.snapshot()["a"]
    assert (view["state"], view["failures"], view["reason"]) == ("open", 3, "upstream answered 502")
    now[0] += 31
    assert r.claim("a")
    r.succeeded("a")
    view = r.snapshot()["a"]
    assert (view["state"], view["failures"], view["reason"]) == ("closed", 0, None)


def test_old_failures_leave_the_window(monkeypatch):
    now = [1000.0]
    r = router(monkeypatch, now)
    r.failed("a")
    r.failed("a")
    now[0] += 61
    r.failed("a")  # the first two are out of the window
    assert r.states()["a"] == {"state": "closed", "failures": 1, "enabled": True, "models": ["m"]}
    now[0] += 61
    r.succeeded("a")  # no failure left in the window: nothing is tracked any more
    assert "a" not in r._breakers
