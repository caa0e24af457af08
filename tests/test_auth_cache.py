"""The token cache: calls that miss together make one database read, and an invalidation
during a read keeps its answer out of the cache."""

from __future__ import annotations

import asyncio

from lightrelay.services import auth as auth_module


async def test_concurrent_misses_make_one_read_and_invalidation_wins(relay, monkeypatch):
    token = await relay.user("herd@example.com")
    auth = relay.lr.relay.auth
    reads: list[str] = []
    real = auth_module.find_principal

    async def counting(engine, *, token_hash):  # noqa: ANN001, ANN202
        reads.append(token_hash)
        await asyncio.sleep(0.05)  # a slow database: every call below arrives during the read
        return await real(engine, token_hash=token_hash)

    monkeypatch.setattr(auth_module, "find_principal", counting)
    auth.forget()  # as when the entry expires
    found = await asyncio.gather(*(auth.principal(token) for _ in range(64)))
    assert len(reads) == 1
    assert {p.account_id for p in found} == {found[0].account_id}
    await auth.principal(token)
    assert len(reads) == 1  # cached now

    # a caller that leaves does not cancel the read the others wait for
    auth.forget()
    leaving = asyncio.ensure_future(auth.principal(token))
    staying = asyncio.ensure_future(auth.principal(token))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert (await staying).account_id == found[0].account_id
    assert len(reads) == 2

    # changed meanwhile (a token revoked, say): the read under way is answered but not kept
    auth.forget()
    under_way = asyncio.ensure_future(auth.principal(token))
    await asyncio.sleep(0.01)
    auth.forget()
    await under_way
    await auth.principal(token)
    assert len(reads) == 4
