"""The built-in model runs in a child process the relay supervises (issue 10): whatever kills that
child, the relay keeps serving, the calls it had end with 503 ``local_model_crashed`` (refunded and
recorded), and a new child serves the next call. A child that cannot start ends "unavailable", not
in a restart loop. Real processes and real signals throughout; the model is the real SmolLM2."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from lightrelay.errors import Unavailable
from lightrelay.providers.base import ChatCall
from lightrelay.providers.local import LocalProvider, read_status
from lightrelay.services.usage import recent_calls
from tests.faults.conftest import CHAT, LIGHT, MODEL, ROOT, cli, relay_env

pytestmark = pytest.mark.localmodel
STORY = "Write a very long story about a dragon who learns to cook."


async def eventually(condition, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
async def test_child_killed_with_a_call_running_and_one_queued(start_relay, http, sig):
    relay = await start_relay(local_model="auto", local_max_tokens=2000)
    local = relay.lr.local
    await local.warmup()
    first_pid = local.pid
    token = await relay.user("crash@example.com", limit=10)
    auth = {"Authorization": f"Bearer {token}"}

    # A: a long stream, read until text flows; B: a light call queued behind it in the child.
    running = await http.post(relay.url + CHAT, headers=auth, json={
        "model": MODEL, "stream": True, "messages": [{"role": "user", "content": STORY}]})
    assert running.status == 200
    head = b""
    while b'"content":"' not in head.split(b'"role"', 1)[-1]:
        head += await running.content.readany()
    queued = asyncio.create_task(relay.light(http, {"token": token, "messages": [{"role": "user", "content": "hi"}]}))
    await eventually(lambda: local.queue_depth == 2, 5, "the second call to be queued")

    os.kill(first_pid, sig)
    async with http.get(relay.url + "/healthz") as r:  # the relay itself never noticed a thing
        assert r.status == 200

    rest = await asyncio.wait_for(running.content.read(), 10)
    events = [e for e in (head + rest).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    error = orjson.loads(events[-2][len(b"data: "):])["error"]
    assert error["code"] == "local_model_crashed" and sig.name in error["message"]

    status, body = await asyncio.wait_for(queued, 10)
    assert status == 503 and body["code"] == 503 and body["data"] is None
    assert sig.name in body["message"] and "本地模型" in body["message"]  # Chinese by default

    # Neither call is charged; both are recorded with the crash.
    await relay.lr.recorder.flush()
    rows = await recent_calls(relay.lr.engine, limit=5)
    assert sorted(r["status"] for r in rows) == [503, 503]
    assert not any(r["charged"] for r in rows) and all(sig.name in r["error"] for r in rows)
    assert await relay.lr.relay.quota.used_today(rows[0]["account_id"]) == 0

    # A new child serves the next call.
    await eventually(lambda: local.state == "ready" and local.pid != first_pid, 30, "the restarted child")
    assert not alive(first_pid)
    status, body = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "Say hi."}],
                                            "params": {"max_tokens": 8}})
    assert status == 200 and body["data"]["completion"]["choices"][0]["message"]["content"].strip()
    assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 1
    async with http.get(relay.url + "/readyz") as r:
        checks = (await r.json())["checks"]
        assert r.status == 200 and checks["local_model"].startswith("ok")


async def test_child_crashing_at_every_start_ends_unavailable(tmp_path: Path):
    """A build that dies in its self-check every time: a few tries with backoff, then "unavailable"."""
    crasher = tmp_path / "crash-at-start"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    states: list[str] = []
    p = LocalProvider(command=[str(crasher)], start_attempts=3, backoff=0.05,
                      on_state=lambda s: states.append(s["state"]))
    call = ChatCall(messages=[{"role": "user", "content": "hi"}], model="smollm2", public_model=MODEL)
    with pytest.raises(Unavailable) as info:
        await p.complete(call)
    assert "SIGSEGV" in info.value.en and "self-check" in info.value.en
    await eventually(lambda: p.state == "unavailable", 10, "unavailable")
    assert p.restarts == 2 and states.count("starting") == 3
    with pytest.raises(Unavailable) as info:  # at once, with the reason, no waiting
        started = time.monotonic()
        await p.complete(call)
    assert time.monotonic() - started < 0.5
    assert "SIGSEGV" in info.value.en and "--rebuild-local" in info.value.en
    await asyncio.sleep(0.3)
    assert p.restarts == 2 and p.state == "unavailable"  # no restart loop
    await p.close()


async def test_model_that_cannot_load_leaves_the_relay_serving(start_relay, http, upstream, tmp_path):
    """The real child with a file that is no model: it says why, the relay serves its channels."""
    junk = tmp_path / "not-a-model.gguf"
    junk.write_bytes(b"GGUF" + os.urandom(4096))
    relay = await start_relay(local_model="auto", local_model_path=str(junk), local_start_attempts=2)
    local = relay.lr.local
    await eventually(lambda: local.state == "unavailable", 30, "unavailable")
    async with http.get(relay.url + "/readyz") as r:
        body = await r.json()
        assert r.status == 503 and body["checks"]["local_model"].startswith("unavailable")
        assert "not-a-model.gguf" in body["checks"]["local_model"]
    token = await relay.user("u@example.com")
    status, body = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 503 and "not-a-model.gguf" in body["message"]

    await relay.channel("up", upstream.base_url, "other-model")  # a channel: the relay is ready again
    async with http.get(relay.url + "/readyz") as r:
        assert r.status == 200
    async with http.post(relay.url + LIGHT, json={"token": token, "model": "other-model",
                                                  "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 200


def test_channel_list_shows_the_local_model_state(tmp_path):
    """``lightrelay channel list`` (another process) reports what the serving relay's child is doing."""
    env = relay_env(tmp_path / "data", 0, LIGHTRELAY_LOCAL_MODEL="auto",
                    LIGHTRELAY_LOCAL_MODEL_PATH=str(tmp_path / "missing.gguf"), LIGHTRELAY_LOCAL_START_ATTEMPTS="1")
    cli(env, "user", "list")  # creates the database
    code = ("import asyncio, sys; from lightrelay.providers.local import LocalProvider, write_status; "
            "from lightrelay.settings import load_settings; s = load_settings(); "
            "p = LocalProvider(s.local_model_path, start_attempts=1, "
            "on_state=lambda st: write_status(s.local_status_file, st))\n"
            "async def go():\n p.start()\n while p.state != 'unavailable': await asyncio.sleep(0.02)\n"
            "asyncio.run(go()); print('down', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "down"
        out = cli(env, "channel", "list")
        assert "builtin-local" in out and "unavailable" in out and "missing.gguf" in out
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert read_status(tmp_path / "data" / "local-model.json") is None  # its relay is gone: not shown


def test_child_exits_when_the_relay_dies():
    """The relay killed outright (no cleanup at all): its child sees stdin close and exits."""
    code = ("import asyncio, os; from lightrelay.providers.local import LocalProvider\n"
            "async def go():\n p = LocalProvider()\n await p.warmup()\n print(p.pid, flush=True)\n"
            " await asyncio.sleep(60)\n"
            "asyncio.run(go())")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while alive(child):
        assert time.monotonic() < deadline, "the child outlived its relay"
        time.sleep(0.05)
