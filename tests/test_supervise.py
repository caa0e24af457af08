"""lightrelay.supervise: a background task that dies is logged, shown as down, and started again."""

from __future__ import annotations

import asyncio
import logging

from lightrelay.supervise import Supervised


async def test_a_task_that_dies_is_started_again(caplog):
    runs: list[int] = []
    first_died = asyncio.Event()

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            first_died.set()
            raise RuntimeError("boom")
        await asyncio.sleep(3600)

    task = Supervised("worker", work, restart_seconds=0.2)
    caplog.set_level(logging.ERROR)
    task.start()
    await first_died.wait()
    await asyncio.sleep(0)  # the failure is handled
    assert not task.up and task.reason == "RuntimeError: boom"
    assert "background task worker died" in caplog.text and "boom" in caplog.text
    for _ in range(100):
        if len(runs) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(runs) == 2 and task.up and task.restarts == 1
    await task.stop()
    assert not task.up


async def test_a_task_that_ends_by_itself_is_not_restarted():
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)

    task = Supervised("once", work, restart_seconds=0.01)
    task.start()
    await task.join()
    await asyncio.sleep(0.05)
    assert runs == [1] and not task.up
