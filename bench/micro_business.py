"""What issue 13's checks cost per call, in CPU time (process time: the event loop and the SQLite
writer's thread together). The budget is 20 µs per call on the chat doors.

1. The reservation on SQLite (``SqliteWriter``, committed on the loop's own connection when idle):
   the plain ``incr`` (what a call cost before) against ``take`` (weights, the extra balance's
   fallback, a token's own daily count) for a token without and with its own daily limit, and for
   a call paid from the extra balance.
2. A token's model list, address list and RPM (``Relay._token_limits``, from the cached principal),
   and the admission's extra work for a token without limits (three attribute checks and the weight).

    .venv/bin/python bench/micro_business.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from ipaddress import ip_network

from lightrelay.db.engine import make_engine, migrate
from lightrelay.relay import ChatRequest, Relay
from lightrelay.services.accounts import Principal, TokenLimits, add_token, create_account
from lightrelay.services.sqlite_writer import SqliteWriter
from lightrelay.settings import load_settings


def cpu_us(t0: float, n: int) -> float:
    return (time.process_time() - t0) / n * 1e6


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=tmp, env="dev")
        await migrate(settings)
        engine = make_engine(settings)
        acc = await create_account(engine, email="bench@example.com", daily_limit=None)
        capped = await create_account(engine, email="capped@example.com", daily_limit=0)
        await add_token(engine, account_id=acc, limits=TokenLimits(daily_limit=10**9))
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"UPDATE accounts SET extra_calls = {10 * n} WHERE id = {capped}")
        await engine.dispose()
        writer = SqliteWriter(f"{tmp}/lightrelay.db")
        variants = (
            ("incr (before issue 13)", lambda d: writer.incr(acc, d, None)),
            ("take, weight 1", lambda d: writer.take(acc, d, None, 1, None, None, False)),
            ("take, weight 5", lambda d: writer.take(acc, d, None, 5, None, None, False)),
            ("take, token with a daily limit", lambda d: writer.take(acc, d, None, 1, 1, 10**9, False)),
            ("take, paid from the extra balance", lambda d: writer.take(capped, d, 0, 1, None, None, True)),
        )
        for _, call in variants:
            for _ in range(200):  # warm up
                await call("2000-01-01")
        # interleaved rounds, the median round of each: the machine's noise hits every variant alike
        per_round, samples = 100, {name: [] for name, _ in variants}
        for _ in range(max(1, n // per_round)):
            for name, call in variants:
                t0 = time.process_time()
                for _ in range(per_round):
                    await call("2000-01-02")
                samples[name].append(cpu_us(t0, per_round))
        rows = [(name, statistics.median(values)) for name, values in samples.items()]
        await writer.close()

    relay = Relay(auth=None, router=None, quota=None, recorder=None, gpt4_prefix="gpt-4")  # type: ignore[arg-type]
    req = ChatRequest(door="openai", token="sk-x", model="gpt-3.5-turbo", messages=[], params={},
                      client_ip="10.1.2.3")
    limited = Principal(account_id=1, email="a@b.c", token_id=7, daily_limit=None, gpt4=False, is_admin=False,
                        disabled=False, models=frozenset({"gpt-3.5-turbo", "gpt-4"}),
                        ips=(ip_network("192.168.0.0/16"), ip_network("10.0.0.0/8")), rpm=10**9)
    plain = Principal(account_id=1, email="a@b.c", token_id=8, daily_limit=None, gpt4=False, is_admin=False,
                      disabled=False)
    t0 = time.process_time()
    for _ in range(n):
        await relay._token_limits(req, limited)
    rows.append(("token limits: models + ips + rpm (memory)", cpu_us(t0, n)))
    t0 = time.process_time()
    for _ in range(n):  # what admit() adds for a token without limits (a relay without weights)
        p = plain
        if p.models is not None or p.ips is not None or p.rpm is not None:
            await relay._token_limits(req, p)
        _w = relay.weights.get(req.model, 1) if relay.weights else 1
        _e = p.extra_calls > 0
    rows.append(("admission extras, token without limits", cpu_us(t0, n)))
    for name, us in rows:
        print(f"{name:45} {us:7.1f} µs CPU/call")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
