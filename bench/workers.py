"""The workers cell: ``serve --workers N`` on SQLite and on PostgreSQL + Redis, and what limits it.

For each backend and N in (1, 2) a fresh relay (one user with a finite daily limit, one channel to the
Go mock that ``bench/run`` started) takes 10 s of ``wrk -c64`` on the OpenAI door, twice:

- **pinned**: every worker on the server core (CPU 1), the load generator and the mock on the other —
  the same core budget for N = 1 and N = 2, so any loss is what N processes cost each other (the
  SQLite write lock, the kernel's spreading of connections, each worker's own caches and flushers);
- **unpinned**: the workers may use both cores, which they share with the load generator, the mock
  and the database servers: what this 2-core host gives, nothing more.

Each row has the throughput, the relay's CPU per call (all its worker processes), calls per second per
busy relay core (the figure that says whether per-worker throughput holds as workers are added), and
the CPU per call of what the workers share: Redis (``redis-server``) and PostgreSQL (every ``postgres``
process), from ``/proc``. The shared servers' CPU per call is the ceiling: one core of Redis at X µs
per call serves 1/X calls/s, whatever the number of relay workers.

    .venv/bin/python bench/workers.py --tool bench/.bin/benchtool --mock http://127.0.0.1:PORT \\
        [--duration 10] [--server-cpus 1 --client-cpus 0] [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from drive import cpu_s, run_wrk  # noqa: E402

LR = [str(ROOT / ".venv" / "bin" / "lightrelay")]
BODY = {"model": "gpt-3.5-turbo-1106", "messages": [{"role": "user", "content": "Hello! Say hello back."}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_named(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def group_pids(pgid: int) -> list[int]:
    """Every process of the relay's process group (the serve master and its workers)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _cpu_s(pid: int) -> float:
    try:
        return cpu_s(pid)
    except OSError:  # gone meanwhile
        return 0.0


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {p: _cpu_s(p) for p in pids}


def used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after.get(p, c) - c for p, c in before.items())


class Relay:
    """One ``lightrelay serve --workers N`` on a fresh SQLite data dir or a fresh PostgreSQL database."""

    def __init__(self, a: argparse.Namespace, backend: str, workers: int, pin: str, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = tmp / f"data-{backend}-{workers}-{pin or 'free'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
        env.update(LIGHTRELAY_DATA_DIR=str(data), LIGHTRELAY_LOCAL_MODEL="off", LIGHTRELAY_LOG_LEVEL="WARNING")
        if backend == "pg+redis":
            db = "lightrelay_bench_workers"
            subprocess.run(["psql", "-q", a.pg, "-c", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}"],
                           check=True, capture_output=True)
            env.update(LIGHTRELAY_DATABASE_URL=a.pg.rsplit("/", 1)[0].replace("postgresql:", "postgresql+asyncpg:")
                       + f"/{db}", LIGHTRELAY_REDIS_URL=a.redis, LIGHTRELAY_REDIS_PREFIX=f"lrbw{os.getpid()}{workers}:",
                       LIGHTRELAY_SECRET_KEY=f"bench-workers-{os.getpid()}-{time.time_ns()}-0123456789")
        self.env = env
        self.token = self.cli("user", "add", "bench@example.com", "--daily-limit", "1000000000").split()[-1]
        self.cli("channel", "add", "mock", "--base-url", f"{a.mock}/v1", "--models", BODY["model"])
        cmd = [*LR, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        if pin:
            cmd = ["taskset", "-c", pin, *cmd]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.wait_ready(workers)

    def cli(self, *args: str) -> str:
        return subprocess.run([*LR, *args], env=self.env, capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip()

    def wait_ready(self, workers: int) -> None:
        end = time.monotonic() + 90
        while time.monotonic() < end:
            ok = subprocess.run(["curl", "-fsS", "-o", "/dev/null", self.url + "/healthz"], capture_output=True)
            if ok.returncode == 0 and len(group_pids(self.proc.pid)) >= workers + (workers > 1):
                time.sleep(1.0)  # every worker listening, not just the first
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the relay ({self.url}) did not come up")

    def stop(self) -> None:
        with_suppress(lambda: os.killpg(self.proc.pid, signal.SIGTERM))
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with_suppress(lambda: os.killpg(self.proc.pid, signal.SIGKILL))
            self.proc.wait(10)


def with_suppress(fn) -> None:  # noqa: ANN001
    try:
        fn()
    except OSError:
        pass


def cell(a: argparse.Namespace, backend: str, workers: int, pin: str, tmp: Path) -> dict:
    relay = Relay(a, backend, workers, pin, tmp)
    client_pin = ["taskset", "-c", a.client_cpus] if pin and a.client_cpus else []
    try:
        url = relay.url + "/v1/chat/completions"
        body = tmp / "body.json"
        body.write_text(json.dumps(BODY))
        run_wrk(url, relay.token, str(body), 64, a.warmup, client_pin, "warm-up")
        ours = group_pids(relay.proc.pid)
        shared = {"redis": pids_named("redis-server"), "postgres": pids_named("postgres")}
        t0, before = time.monotonic(), cpu_of(ours)
        before_shared = {k: cpu_of(v) for k, v in shared.items()}
        r = run_wrk(url, relay.token, str(body), 64, a.duration, client_pin, f"{backend} ×{workers}")
        wall = time.monotonic() - t0
        relay_s = used(before, cpu_of(ours))
        shared_s = {k: used(before_shared[k], cpu_of(v)) for k, v in shared.items()}
    finally:
        relay.stop()
    calls = r["requests"]
    return {"backend": backend, "workers": workers, "pinned": bool(pin), "rps": r["rps"], "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "errors": r["non2xx"] + r["socket_errors"],
            "relay_cores": relay_s / wall, "relay_us": relay_s * 1e6 / calls,
            "per_core": calls / relay_s if relay_s else float("nan"),
            "redis_us": shared_s["redis"] * 1e6 / calls, "pg_us": shared_s["postgres"] * 1e6 / calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool")
    ap.add_argument("--mock", required=True)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    ap.add_argument("--pg", default=os.environ.get("LIGHTRELAY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis", default=os.environ.get("LIGHTRELAY_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lightrelay-bench-workers.") as tmp:
        for backend in ("sqlite", "pg+redis"):
            for pin in (a.server_cpus, ""):
                for workers in (1, 2):
                    row = cell(a, backend, workers, pin, Path(tmp))
                    rows.append(row)
                    print(f"[bench] workers: {backend} ×{workers} {'pinned' if pin else 'unpinned'}: "
                          f"{row['rps']:,.0f}/s, relay {row['relay_us']:.0f} µs/call", file=sys.stderr, flush=True)
    print("### Several workers (`serve --workers N`, OpenAI door, wrk c64)\n")
    print(f"pinned: every worker on CPU {a.server_cpus}, load and mock on CPU {a.client_cpus}; unpinned: the "
          "workers share both cores with the load, the mock, Redis and PostgreSQL.\n")
    print("| backend | workers | cores | req/s | p50 ms | p99 ms | errors | relay cores busy | relay CPU µs/call "
          "| calls/s per busy relay core | Redis CPU µs/call | PostgreSQL CPU µs/call |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['workers']} | {'1 (pinned)' if r['pinned'] else 'both'} | {r['rps']:,.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['relay_cores']:.2f} | {r['relay_us']:.0f} | "
              f"{r['per_core']:,.0f} | {r['redis_us']:.1f} | {r['pg_us']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
