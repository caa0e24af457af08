"""Helpers for the fault-injection suite (fixtures come from tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from lightrelay.services.usage import recent_calls

MODEL = "gpt-3.5-turbo-1106"
LIGHT = "/api/light/chat/createChatCompletion"
CHAT = "/v1/chat/completions"
ROOT = Path(__file__).resolve().parents[2]


def body_for(door: str, token: str, text: str = "hi", *, stream: bool = True, **params: Any) -> tuple[str, dict,
                                                                                                       dict]:
    """(path, json, headers) for one call through ``door`` ("light" | "openai")."""
    messages = [{"role": "user", "content": text}]
    if door == "light":
        return LIGHT, {"token": token, "messages": messages, "params": {"stream": stream, **params}}, {}
    return CHAT, {"model": MODEL, "messages": messages, "stream": stream, **params}, {
        "Authorization": f"Bearer {token}"}


async def call_text(http: aiohttp.ClientSession, url: str, door: str, token: str, text: str = "hi",
                    **kw: Any) -> tuple[int, bytes]:
    """The whole raw body of one call (bounded: a hung stream fails the test)."""
    path, json, headers = body_for(door, token, text, **kw)
    async with http.post(url + path, json=json, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as r:
        return r.status, await r.read()


async def last_row(relay: Any, calls: int = 1) -> dict[str, Any]:
    """The newest usage row, once ``calls`` rows are recorded (a cancelled call records as it unwinds)."""
    deadline = time.monotonic() + 3
    while True:
        await relay.lr.recorder.flush()
        rows = await recent_calls(relay.lr.engine, limit=calls)
        if len(rows) >= calls:
            return rows[0]
        assert time.monotonic() < deadline, f"{len(rows)} usage rows recorded, {calls} expected"
        await asyncio.sleep(0.02)


# -- real subprocesses ---------------------------------------------------------------------------------
def relay_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
    env.update(LIGHTRELAY_DATA_DIR=str(data_dir), LIGHTRELAY_PORT=str(port), LIGHTRELAY_ENV="dev",
               LIGHTRELAY_LOCAL_MODEL="off", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``python -m lightrelay ARGS``; its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run([sys.executable, "-m", "lightrelay", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def acli(env: dict[str, str], *args: str) -> str:
    """``cli`` without blocking the event loop (a mock upstream may be serving on it)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "lightrelay", *args, env=env, cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def start_serve(env: dict[str, str], log: Path, prefix: tuple[str, ...] = ()) -> asyncio.subprocess.Process:
    """``python -m lightrelay serve`` (behind ``prefix``, e.g. ``prlimit --nofile=N``), waited on until
    /healthz answers."""
    proc = await asyncio.create_subprocess_exec(*prefix, sys.executable, "-m", "lightrelay", "serve", env=env,
                                                cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}/healthz"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"serve exited {proc.returncode}: {_tail(log)}")
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve did not start: {_tail(log)}")
