"""The built-in model's cell: tokens/s and first-token time for a 64-token reply, three ways.

    in-process    the child's own generation code (``local_worker.Model``) run in this process:
                  llama-cpp with no process boundary (how the relay ran it before issue 10)
    provider      ``LocalProvider``: the same generation in its child process, over the pipe
    relay         a real ``lightrelay serve`` (built-in model, no channel), OpenAI door, streamed

With ``--native-site DIR`` (a llama-cpp-python built with GGML_NATIVE=ON, installed with
``pip install --target DIR``) the in-process row is measured again with that build: the portable
build against a native one, on the same machine.

Greedy (temperature 0, fixed seed), the same prompt every round; each figure is the median of
``--rounds`` rounds after one warm-up. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "user", "content": "Write a very long story about a dragon who learns to cook."}]
PARAMS = {"max_tokens": 64, "temperature": 0, "seed": 7}


class Round:
    """One reply's timings: feed it every chunk (chat.completion.chunk dicts) as it arrives."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = self.last = 0.0
        self.tokens = 0

    def see(self, chunk: dict) -> bool:
        if chunk.get("usage"):
            self.tokens = chunk["usage"]["completion_tokens"]
        elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            self.last = time.perf_counter()
            self.first = self.first or self.last
        return True

    def row(self) -> tuple[float, float, int]:
        return self.first - self.start, self.last - self.start, self.tokens


def in_process(rounds: int) -> list[tuple[float, float, int]]:
    """(first token s, total s, tokens) per round, generation in this very process."""
    from lightrelay.providers.local_worker import Job, Model

    model = Model(None, 2048, None, 256)
    out = []
    for i in range(rounds + 1):
        job = Job({"id": i, "stream": True, "messages": PROMPT, "public_model": "bench", "params": PARAMS})
        r = Round()
        model.generate(job, r.see)
        if i:  # the first round warms up
            out.append(r.row())
    return out


async def through_provider(rounds: int) -> list[tuple[float, float, int]]:
    from lightrelay.providers.base import ChatCall
    from lightrelay.providers.local import LocalProvider

    provider = LocalProvider()
    await provider.warmup()
    out = []
    try:
        for i in range(rounds + 1):
            call = ChatCall(messages=PROMPT, model="smollm2", public_model="bench", params=dict(PARAMS))
            r = Round()
            async for chunk in provider.stream(call):
                r.see(chunk)
            if i:
                out.append(r.row())
    finally:
        await provider.close()
    return out


def start_relay(tmp: str) -> tuple[subprocess.Popen, str, str]:
    """A real ``lightrelay serve`` with the built-in model and no channel: (process, url, token)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
    env.update(LIGHTRELAY_DATA_DIR=tmp, LIGHTRELAY_LOCAL_MODEL="auto", LIGHTRELAY_LOG_LEVEL="WARNING",
               LIGHTRELAY_PORT=str(port))
    lr = [sys.executable, "-m", "lightrelay"]
    token = subprocess.run([*lr, "user", "add", "bench@example.com", "--daily-limit", "unlimited"], env=env,
                           check=True, capture_output=True, text=True, cwd=ROOT).stdout.split()[-1]
    server = subprocess.Popen([*lr, "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    return server, f"http://127.0.0.1:{port}", token


async def through_relay(url: str, token: str, rounds: int) -> list[tuple[float, float, int]]:
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as http:
        for _ in range(600):  # ready once the child passed its self-check
            try:
                async with http.get(url + "/readyz") as r:
                    if r.status == 200 and (await r.json())["checks"].get("local_model", "").startswith("ok"):
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        body = {"model": "gpt-3.5-turbo-1106", "messages": PROMPT, "stream": True,
                "stream_options": {"include_usage": True}, **PARAMS}
        for i in range(rounds + 1):
            rnd = Round()
            async with http.post(url + "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, await r.text()
                async for line in r.content:
                    if line.startswith(b"data: {"):
                        rnd.see(json.loads(line[6:]))
            if i:
                out.append(rnd.row())
    return out


def relay_rows(rounds: int) -> list[tuple[float, float, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        server, url, token = start_relay(tmp)
        try:
            return asyncio.run(through_relay(url, token, rounds))
        finally:
            server.terminate()
            server.wait(30)


def summary(rows: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    """(median tokens/s once the first token is out, median first-token ms, tokens per reply)."""
    return (statistics.median((t - 1) / (total - first) for first, total, t in rows),
            statistics.median(f for f, _, _ in rows) * 1000, rows[0][2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--native-site", help="a folder with a natively built llama-cpp-python (pip --target)")
    parser.add_argument("--json", action="store_true", help="print the in-process figures as JSON only")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(summary(in_process(args.rounds))))
        return
    import llama_cpp

    rows = {"in-process (no boundary)": summary(in_process(args.rounds)),
            "provider (child process)": summary(asyncio.run(through_provider(args.rounds))),
            "relay, OpenAI door, stream": summary(relay_rows(args.rounds))}
    if args.native_site:
        env = {**os.environ, "PYTHONPATH": args.native_site + os.pathsep + str(ROOT)}
        done = subprocess.run([sys.executable, __file__, "--json", "--rounds", str(args.rounds)], env=env,
                              check=True, capture_output=True, text=True)
        rows["in-process, native build"] = tuple(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows["in-process (no boundary)"][0]
    print(f"### Built-in model (llama-cpp-python {llama_cpp.__version__}, portable build; "
          f"{PARAMS['max_tokens']}-token reply, greedy, median of {args.rounds})\n")
    print("| path | tokens/s (after the first) | vs in-process | first token ms | tokens |")
    print("|---|---|---|---|---|")
    for name, (rate, first, tokens) in rows.items():
        print(f"| {name} | {rate:.1f} | {100 * rate / base:.1f} % | {first:.1f} | {tokens} |")
    print()
    print("Target (issue 10): the process boundary costs under 5 % of tokens/s (provider vs in-process).")


if __name__ == "__main__":
    main()
