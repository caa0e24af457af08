"""``PerTurn``: what the calls of one event-loop turn ask for goes out as one batch."""

from __future__ import annotations

import asyncio

import pytest

from lightrelay.perturn import PerTurn


async def test_one_turn_one_batch_in_order_and_each_caller_gets_its_own_answer():
    sent: list[list[int]] = []

    async def send(requests: list[int]) -> list[int]:
        sent.append(requests)
        await asyncio.sleep(0)
        return [r * 10 for r in requests]

    batch = PerTurn(send)
    answers = await asyncio.gather(*(batch(i) for i in range(20)))
    assert answers == [i * 10 for i in range(20)]
    assert sent == [list(range(20))]
    assert await batch(7) == 70  # a lone call is sent at the end of its own turn
    assert sent[-1] == [7] and batch.batches == 2


async def test_a_big_burst_is_split_and_an_error_fails_its_whole_batch_only():
    async def send(requests: list[int]) -> list[int]:
        if 13 in requests:
            raise ConnectionError("gone")
        return requests

    batch = PerTurn(send, max_batch=10)
    results = await asyncio.gather(*(batch(i) for i in range(25)), return_exceptions=True)
    assert results[:10] == list(range(10)) and results[20:] == list(range(20, 25))
    assert all(isinstance(r, ConnectionError) for r in results[10:20])
    assert batch.batches == 3


async def test_a_caller_who_leaves_does_not_stop_the_batch_and_its_answer_goes_to_on_orphan():
    release = asyncio.Event()
    orphans: list[tuple[int, int]] = []

    async def send(requests: list[int]) -> list[int]:
        await release.wait()
        return [r + 100 for r in requests]

    async def on_orphan(request: int, answer: int) -> None:
        orphans.append((request, answer))

    batch = PerTurn(send, on_orphan=on_orphan)
    stay = asyncio.ensure_future(batch(1))
    leave = asyncio.ensure_future(batch(2))
    await asyncio.sleep(0.01)  # the batch is on its way
    leave.cancel()
    release.set()
    assert await stay == 101
    with pytest.raises(asyncio.CancelledError):
        await leave
    await batch.drain()
    assert orphans == [(2, 102)]
