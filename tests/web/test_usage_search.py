"""Usage search and export (issue 13): totals kept as rows are written, keyset pages through the
console, CSV from the CLI and the console (streamed), pruning that keeps the totals."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from lightrelay.db.models import usage, usage_daily, usage_hourly
from lightrelay.services import usage_stats
from tests.test_cli import cli

MSG = [{"role": "user", "content": "hello"}]
MODEL = "gpt-3.5-turbo-1106"
PASSWORD = "usage pass 1234"


async def _scalar(relay, stmt):
    async with relay.lr.engine.connect() as conn:
        return (await conn.execute(stmt)).scalar()


async def _calls(relay, upstream, http) -> str:
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    token = await relay.user("ann@example.com", limit=3, gpt4=True, password=PASSWORD)
    other = await relay.user("bob@example.com", limit=10)
    for model in (MODEL, "gpt-4", MODEL, MODEL, MODEL):  # 3 ok, then 2 x 429
        await relay.light(http, {"token": token, "model": model, "messages": MSG})
    upstream.mode = "fail-500"
    await relay.light(http, {"token": other, "messages": MSG})  # 502
    upstream.mode = "ok"
    await relay.light(http, {"token": other, "messages": MSG})
    await relay.lr.recorder.flush()
    return token


async def test_totals_csv_and_prune(relay, upstream, http):
    await _calls(relay, upstream, http)
    rows = await _scalar(relay, select(func.count()).select_from(usage))
    assert rows == 7
    assert await _scalar(relay, select(func.sum(usage_daily.c.calls))) == 7
    assert await _scalar(relay, select(func.sum(usage_hourly.c.calls))) == 7
    assert await _scalar(relay, select(func.sum(usage_daily.c.errors))) == 3
    assert await _scalar(relay, select(func.sum(usage_daily.c.charged))) == 4

    today = relay.lr.clock.today()
    _, out, _ = await cli(relay, "usage", "--csv", "--since", today, "--until", today)
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 7 and table[0].keys() >= {"created_at", "email", "model", "status", "total_ms"}
    _, out, _ = await cli(relay, "usage", "ann@example.com", "--csv", "--status", "429")
    assert [r["email"] for r in csv.DictReader(io.StringIO(out))] == ["ann@example.com"] * 2
    _, out, _ = await cli(relay, "usage", "--csv", "--model", "gpt-4")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 1
    _, out, _ = await cli(relay, "usage", "--csv", "--until", "2000-01-01")
    assert out.strip() == ",".join(usage_stats.CSV_COLUMNS)
    code, _, err = await cli(relay, "usage", "--csv", "--since", "yesterday-ish", ok=False)
    assert code != 0 and "YYYY-MM-DD" in err

    tomorrow = (datetime.fromisoformat(today) + timedelta(days=1)).date().isoformat()
    _, out, _ = await cli(relay, "usage", "prune", "--before", tomorrow)
    assert "deleted 7" in out
    assert await _scalar(relay, select(func.count()).select_from(usage)) == 0
    _, out, _ = await cli(relay, "usage")  # the daily totals stay
    assert re.search(rf"{today}\s+7\s+4\s+3", out), out
    code, _, err = await cli(relay, "usage", "prune", "--before", "2030-02-31", ok=False)
    assert code != 0 and "YYYY-MM-DD" in err


async def test_search_pages_use_an_index_and_never_repeat(relay, visitor):
    """A few thousand rows written through the SQLite writer, paged 20 at a time on the admin page
    by the keyset cursor: every row once, in order; and the filtered queries are index searches."""
    await relay.user("root@example.com", admin=True, password=PASSWORD)
    now = datetime.now(UTC)
    day = relay.lr.clock.today()
    rows = [{"created_at": now - timedelta(seconds=i), "day": day, "account_id": 1, "token_id": 1 + i % 3,
             "model": "m-big" if i % 10 == 0 else "m-small", "channel": "c", "door": "openai", "stream": False,
             "status": 200 if i % 7 else 502, "prompt_tokens": 1, "completion_tokens": 2, "first_byte_ms": None,
             "total_ms": 1.0, "charged": bool(i % 7), "partial": False, "error": None} for i in range(3000)]
    await relay.lr.sqlite_writer.insert_usage(rows)
    assert await _scalar(relay, select(func.sum(usage_daily.c.calls))) == 3000

    page = await visitor(relay)
    await page.login("root@example.com", PASSWORD)
    seen: list[str] = []
    path = "/admin/usage?model=m-big"
    while True:
        await page.get(path)
        assert page.status == 200
        calls = page.text[page.text.index('id="calls"'):page.text.index('id="hours"')]
        seen += re.findall(r"<tr>\s*<td>([^<]+)</td>", calls)
        nxt = re.search(r'href="\?([^"]*before=\d+)" class="button" id="older"', page.text)
        if not nxt:
            break
        path = "/admin/usage?" + nxt.group(1).replace("&amp;", "&")
    assert len(seen) == 300 and len(set(seen)) == 300
    hours = re.findall(r'<tr><td>([0-9-]+ [0-9]{2}):00</td><td class="num">(\d+)</td>', page.text)
    assert sum(int(n) for _, n in hours) == 3000  # the last 24 hours, from the hourly totals (rows span 50 min)

    async with relay.lr.engine.connect() as conn:
        for where in ("model = 'm-big'", "token_id = 2", "created_at >= '2000-01-01'"):
            plan = " ".join(str(r[-1]) for r in await conn.execute(text(
                f"EXPLAIN QUERY PLAN SELECT * FROM usage WHERE {where} AND id < 2000 ORDER BY id DESC LIMIT 21")))
            assert "USING INDEX" in plan or "USING INTEGER PRIMARY KEY" in plan, (where, plan)
            assert "SCAN usage" not in plan or "USING" in plan, plan

    async with page.session.get(relay.url + "/admin/usage.csv?status=5xx") as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
        body = await r.text()
    assert len(body.strip().splitlines()) == 1 + len([i for i in range(3000) if i % 7 == 0])


async def test_user_usage_page_filters_and_exports_only_their_own(relay, upstream, http, visitor):
    await _calls(relay, upstream, http)
    page = await visitor(relay)
    await page.login("ann@example.com", PASSWORD)
    await page.get("/usage?status=429")
    assert page.status == 200 and page.text.count('class="pill off">429<') == 2
    await page.get("/usage?model=gpt-4")
    assert page.text.count("<code>gpt-4</code>") == 1
    await page.get("/usage?since=not-a-date&status=lots")  # malformed filters filter nothing
    assert page.status == 200
    async with page.session.get(relay.url + "/usage.csv?email=bob@example.com") as r:  # no peeking at others
        lines = (await r.text()).strip().splitlines()
    assert len(lines) == 1 + 5 and all("bob@" not in line for line in lines)
    async with page.session.get(relay.url + "/admin/usage") as r:
        assert r.status == 403


async def test_totals_under_concurrent_writes(start_relay, upstream, http):
    relay = await start_relay(rate_bad_token="1000/60")  # 200 calls of a token not yet cached, at once
    await relay.channel("mock", upstream.base_url, MODEL)
    token = await relay.user("many@example.com", limit=None)
    await asyncio.gather(*(relay.light(http, {"token": token, "messages": MSG}) for _ in range(200)))
    await relay.lr.recorder.flush()
    assert await _scalar(relay, select(func.count()).select_from(usage)) == 200
    assert await _scalar(relay, select(func.sum(usage_daily.c.calls))) == 200
    assert await _scalar(relay, select(func.sum(usage_hourly.c.calls))) == 200
