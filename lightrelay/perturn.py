"""One round trip for the requests that one turn of the event loop makes.

Concurrent calls reach the same step (a Redis take, a rate-limit read) in the same
turn of the event loop. ``PerTurn`` queues what they ask for and, once that turn's
callbacks have run, hands the whole list to ``send`` in one task of its own: one
round trip (one script call, one pipeline) instead of one per call. Nothing waits
for more: a lone call is sent at the end of its own turn, so one call at a time
costs no latency.

Each caller awaits its own answer. ``send`` raising fails every caller of that
batch with the same error. A caller that is cancelled (its client left) while
its request is on the way does not stop the batch; ``on_orphan(request, answer)``
is called for its answer, to undo what it did (a charge given back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Q = TypeVar("Q")
A = TypeVar("A")


class PerTurn(Generic[Q, A]):
    def __init__(self, send: Callable[[list[Q]], Awaitable[list[A]]], *, max_batch: int = 256,
                 on_orphan: Callable[[Q, A], Awaitable[None]] | None = None) -> None:
        self._send = send
        self._max = max_batch
        self._on_orphan = on_orphan
        self._queued: list[tuple[Q, asyncio.Future[A]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0  # sent so far (for tests and the benchmark)

    def __call__(self, request: Q) -> asyncio.Future[A]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[A] = loop.create_future()
        self._queued.append((request, future))
        if len(self._queued) == 1:  # the first of this turn: send them all once the turn's callbacks have run
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        loop = asyncio.get_running_loop()
        for i in range(0, len(queued), self._max):
            task = loop.create_task(self._run(queued[i:i + self._max]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _run(self, batch: list[tuple[Q, asyncio.Future[A]]]) -> None:
        self.batches += 1
        try:
            answers = await self._send([request for request, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the relay is stopping: nobody is left to answer
            for _, future in batch:
                future.cancel()
            raise
        for (request, future), answer in zip(batch, answers, strict=True):
            if not future.cancelled():
                future.set_result(answer)
            elif self._on_orphan is not None:
                await self._on_orphan(request, answer)

    async def drain(self) -> None:
        """Wait until every batch on its way has been answered (at shutdown)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
