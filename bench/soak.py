"""Memory soak: N calls (stream and non-stream, both doors) through a real ``lightrelay serve``
subprocess to a mock upstream, sampling the relay's RSS (/proc/PID/status) as it goes.

    .venv/bin/python bench/soak.py                 # 20k calls
    .venv/bin/python bench/soak.py --calls 100000  # the DESIGN.md §9 figure

Not a test: it prints a table and a verdict ("flat" when RSS after warm-up grows by less than
``--tolerance`` MiB). The mock upstream runs in this process, on its own thread.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mock_upstream import MockUpstream  # noqa: E402

MODEL = "gpt-3.5-turbo-1106"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "lightrelay", *args], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return out.stdout


async def one_call(http: aiohttp.ClientSession, url: str, token: str, n: int) -> bool:
    stream, light = bool(n & 1), bool(n & 2)
    messages = [{"role": "user", "content": f"soak call {n} " + "lorem ipsum " * 8}]
    if light:
        path, body, headers = ("/api/light/chat/createChatCompletion",
                               {"token": token, "messages": messages, "params": {"stream": stream}}, None)
    else:
        path, body, headers = ("/v1/chat/completions", {"model": MODEL, "messages": messages, "stream": stream},
                               {"Authorization": f"Bearer {token}"})
    async with http.post(url + path, json=body, headers=headers) as r:
        await r.read()
        return r.status == 200


async def drive(url: str, token: str, pid: int, calls: int, concurrency: int, every: int) -> list[tuple]:
    samples: list[tuple] = []
    counter = itertools.count()
    done = failed = 0
    started = time.perf_counter()
    next_sample = every

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal done, failed, next_sample
        while (n := next(counter)) < calls:
            if not await one_call(http, url, token, n):
                failed += 1
            done += 1
            if done >= next_sample:
                next_sample += every
                elapsed = time.perf_counter() - started
                samples.append((done, elapsed, done / elapsed, rss_mib(pid), failed))
                d, e, rate, rss, f = samples[-1]
                print(f"{d:>8} {e:>8.1f} {rate:>8.0f} {rss:>9.1f} {f:>7}", flush=True)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await one_call(http, url, token, 0)
        samples.append((0, 0.0, 0.0, rss_mib(pid), 0))
        print(f"{'calls':>8} {'seconds':>8} {'calls/s':>8} {'rss_MiB':>9} {'failed':>7}")
        print(f"{0:>8} {0.0:>8.1f} {'-':>8} {samples[0][3]:>9.1f} {0:>7}", flush=True)
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--sample-every", type=int, default=None, help="calls between RSS samples")
    ap.add_argument("--tolerance", type=float, default=10.0, help="MiB of growth after warm-up still called flat")
    args = ap.parse_args()
    every = args.sample_every or max(1000, args.calls // 20)

    up = MockUpstream().start_in_thread()
    with tempfile.TemporaryDirectory(prefix="lightrelay-soak-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
        env.update(LIGHTRELAY_DATA_DIR=tmp, LIGHTRELAY_PORT=str(free_port()), LIGHTRELAY_ENV="dev",
                   LIGHTRELAY_LOCAL_MODEL="off", LIGHTRELAY_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
        token = cli(env, "user", "add", "soak@example.com", "--daily-limit", "unlimited").strip().splitlines()[-1]
        cli(env, "channel", "add", "mock", "--base-url", up.base_url, "--models", MODEL)
        relay = subprocess.Popen([sys.executable, "-m", "lightrelay", "serve"], env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"
        try:
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", int(env["LIGHTRELAY_PORT"])), 0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            samples = asyncio.run(drive(url, token, relay.pid, args.calls, args.concurrency, every))
        finally:
            relay.terminate()
            relay.wait(30)
            up.stop()
    warm = samples[min(2, len(samples) - 1)]  # after the first samples: caches, pools and arenas are warm
    last = samples[-1]
    growth = last[3] - warm[3]
    print(f"\nRSS: start {samples[0][3]:.1f} MiB, after {warm[0]} calls {warm[3]:.1f} MiB, after {last[0]} calls "
          f"{last[3]:.1f} MiB: {growth:+.1f} MiB over the last {last[0] - warm[0]} calls "
          f"({'flat' if growth < args.tolerance else 'GROWING'}); {last[4]} failed calls")


if __name__ == "__main__":
    main()
