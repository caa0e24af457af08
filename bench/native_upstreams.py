"""The native-upstream cell: what an Anthropic-typed channel costs a real relay over an OpenAI-typed one.

A real ``lightrelay serve`` (one worker, SQLite, auth, quota and usage all on) with two channels to
Python mocks on loopback — ``tests/mock_upstream.py`` (OpenAI) and ``tests/mock_providers.py``
(Anthropic), both giving the same 16-piece streamed reply. Calls go one at a time through the chat
door, whole replies and streams, in alternating batches of 100 per channel; the relay's CPU time
(``/proc``, 10 ms ticks) per call is compared. The difference is what the Anthropic translation costs
in place (request building, reply and event translation, the extra SSE event lines), against the
targets of ≤ 50 µs per call and ≤ 10 µs per streamed event. It is a small difference of two large
numbers: on a busy machine it is noise of ±100 µs; ``bench/micro_translate.py`` measures the
translation alone, precisely.

    .venv/bin/python bench/native_upstreams.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightrelay.db.engine import make_engine, migrate  # noqa: E402
from lightrelay.security import KeyBox  # noqa: E402
from lightrelay.services import accounts, channels  # noqa: E402
from lightrelay.settings import Settings  # noqa: E402
from tests.mock_providers import MockAnthropic  # noqa: E402
from tests.mock_upstream import MockUpstream  # noqa: E402

SECRET = "bench-native-secret-0123456789"
TEXT = "x" * 58  # "echo: " + 58 characters = 64 characters: 16 pieces of 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mocks_in_thread() -> tuple[MockUpstream, MockAnthropic]:
    """Both mocks on an event loop of their own, in a daemon thread (off this process's measuring loop)."""
    ready = threading.Event()
    made: list = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def start() -> list:
            return list(await asyncio.gather(MockUpstream().start(), MockAnthropic().start()))

        made.extend(loop.run_until_complete(start()))
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True, name="mocks").start()
    ready.wait(10)
    return made[0], made[1]


async def prepare(settings: Settings, openai_url: str, anthropic_url: str) -> str:
    await migrate(settings)
    engine = make_engine(settings)
    try:
        box = KeyBox(SECRET)
        await channels.add_channel(engine, box, name="oa", base_url=openai_url, models={"via-openai": "m"})
        await channels.add_channel(engine, box, name="an", type="anthropic", base_url=anthropic_url,
                                   api_key="sk-ant-bench-0123456789", models={"via-anthropic": "claude-bench"})
        account = await accounts.create_account(engine, email="bench@example.com", daily_limit=None)
        return await accounts.add_token(engine, account_id=account, name="bench")
    finally:
        await engine.dispose()


async def measure(url: str, token: str, pid: int, stream: bool, calls: int,
                  batch: int = 100) -> dict[str, tuple[float, int]]:
    """Per model: (relay CPU µs per call, chunks per stream). The two models' batches alternate, so a
    change in the machine's load meanwhile falls on both alike."""
    headers = {"Authorization": f"Bearer {token}"}
    models = ("via-openai", "via-anthropic")
    used = dict.fromkeys(models, 0.0)
    events = dict.fromkeys(models, 0)
    async with aiohttp.ClientSession() as http:
        async def one(model: str) -> int:
            body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": TEXT}]}
            async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                raw = await r.read()
                assert r.status == 200, raw[:300]
                return raw.count(b"data: ") - 1 if stream else 0

        for model in models:  # warm up
            for _ in range(min(200, calls)):
                await one(model)
        for _ in range(max(1, calls // batch)):
            for model in models:
                c0 = cpu_s(pid)
                for _ in range(batch):
                    events[model] = await one(model)
                used[model] += cpu_s(pid) - c0
    n = max(1, calls // batch) * batch
    return {m: (used[m] / n * 1e6, events[m]) for m in models}


async def main(calls: int) -> int:
    openai_mock, anthropic_mock = mocks_in_thread()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
        env.update(LIGHTRELAY_DATA_DIR=tmp, LIGHTRELAY_ENV="dev", LIGHTRELAY_SECRET_KEY=SECRET,
                   LIGHTRELAY_LOCAL_MODEL="off", LIGHTRELAY_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
        settings = Settings(data_dir=Path(tmp), env="dev", secret_key=SECRET, local_model="off")
        token = await prepare(settings, openai_mock.base_url, anthropic_mock.base_url)
        proc = subprocess.Popen([sys.executable, "-m", "lightrelay", "serve", "--port", str(port)], env=env,  # noqa: ASYNC220
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    try:
                        async with http.get(url + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
            rows = {}
            for stream in (False, True):
                for model, row in (await measure(url, token, proc.pid, stream, calls)).items():
                    rows[(model, stream)] = row
        finally:
            proc.terminate()
            proc.wait(30)
    whole = rows[("via-anthropic", False)][0] - rows[("via-openai", False)][0]
    streamed = rows[("via-anthropic", True)][0] - rows[("via-openai", True)][0]
    events = rows[("via-anthropic", True)][1]
    per_event = (streamed - whole) / events if events else 0.0
    print("| relay CPU per call (µs) | OpenAI-typed channel | Anthropic-typed channel | difference |")
    print("|---|---|---|---|")
    for stream, diff in ((False, whole), (True, streamed)):
        print(f"| {'stream' if stream else 'whole reply'} | {rows[('via-openai', stream)][0]:.0f} | "
              f"{rows[('via-anthropic', stream)][0]:.0f} | {diff:+.0f} |")
    print(f"\nAnthropic translation in place: {whole:+.1f} µs per call (target ≤ 50), "
          f"{per_event:+.2f} µs per streamed event over {events} chunks (target ≤ 10); {calls} calls each, "
          f"one at a time. The translation alone: bench/micro_translate.py.")
    return 0 if whole <= 50 and per_event <= 10 else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    sys.exit(asyncio.run(main(ap.parse_args().calls)))
