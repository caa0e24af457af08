"""Drive the benchmark against servers that ``bench/run`` has started, and print one markdown table.

Standard library only. Every load phase is bounded in time (wrk ``-d``, benchtool ``-d``/``-n``
and a subprocess timeout) and sends traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MESSAGES = [{"role": "user", "content": "Hello! Please say hello back in one short sentence."}]
MODEL = "gpt-3.5-turbo-1106"
PACED_MODEL = "bench-paced"


@dataclass
class Target:
    key: str  # direct | lr-openai | lr-light | lr-responses | lr-messages | litellm
    label: str
    url: str
    auth: str | None
    light: bool = False
    token: str | None = None
    pid: int | None = None
    door: str = "chat"  # the body's shape: chat | responses | messages
    extra: bool = False  # a door measured in one cell each (non-stream c16, unpaced streams c16)

    def body(self, *, stream: bool, model: str = MODEL) -> dict:
        if self.light:
            return {"model": model, "token": self.token, "messages": MESSAGES, "params": {"stream": stream}}
        if self.door == "responses":
            return {"model": model, "input": MESSAGES[0]["content"], "store": False, "stream": stream}
        if self.door == "messages":
            return {"model": model, "max_tokens": 256, "messages": MESSAGES, "stream": stream}
        body: dict = {"model": model, "messages": MESSAGES}
        if stream:
            body["stream"] = True
        return body


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.tmp = Path(args.tmp)
        self.pin = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
        self.results: dict = {"nonstream": {}, "streams": {}, "paced": {}, "memory": {}, "soak": []}
        self.server_pids = [p for p in (args.relay_pid, args.scale_pid, args.litellm_pid) if p]

    def log(self, msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    def body_file(self, target: Target, *, stream: bool, model: str = MODEL) -> str:
        path = self.tmp / f"body-{target.key}-{'s' if stream else 'n'}-{model}.json"
        path.write_text(json.dumps(target.body(stream=stream, model=model)))
        return str(path)

    # -- load generators ---------------------------------------------------------
    def wrk(self, target: Target, conc: int, seconds: float) -> dict:
        return run_wrk(target.url, target.auth or "", self.body_file(target, stream=False), conc, seconds,
                       self.pin, target.label)

    def streams(self, target: Target, conc: int, seconds: float, *, model: str = MODEL, stream: bool = True,
                count: int = 0) -> dict:
        cmd = [*self.pin, self.a.tool, "streams", "-url", target.url, "-c", str(conc), "-d", f"{seconds}s",
               "-n", str(count), "-body", self.body_file(target, stream=stream, model=model)]
        if target.auth:
            cmd += ["-H", f"Authorization: Bearer {target.auth}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        if out.returncode != 0:
            raise RuntimeError(f"benchtool failed for {target.label}: {out.stderr}")
        return json.loads(out.stdout)

    # -- isolation ---------------------------------------------------------------
    def isolate(self, target: Target) -> None:
        """Only the server under test runs: the others are paused (SIGSTOP) so that their
        background work cannot steal the core, and the one under test first goes quiet."""
        for pid in self.server_pids:
            os.kill(pid, signal.SIGCONT if pid == target.pid else signal.SIGSTOP)
        if target.pid:
            wait_idle(target.pid)

    def resume_all(self) -> None:
        for pid in self.server_pids:
            os.kill(pid, signal.SIGCONT)

    # -- phases ------------------------------------------------------------------
    def nonstream(self, targets: list[Target]) -> None:
        # concurrency outside, targets inside: the cells compared with each other (embedded / scale-out /
        # LiteLLM at one concurrency) run back to back, so a drift of the host's speed hits them alike.
        # With --rounds N the whole sweep runs N times and each cell reports its median round (by req/s),
        # with the spread of the rounds beside it.
        runs: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(self.a.rounds):
            for conc in (1, 16, 64):
                for t in [t for t in targets if conc == 16 or not t.extra]:
                    self.isolate(t)
                    self.wrk(t, conc, self.a.warmup)
                    cpu0 = self.snapshot()
                    r = self.wrk(t, conc, self.a.duration)
                    self.cpu_note(r, t, cpu0, r["requests"])
                    runs.setdefault((t.key, conc), []).append(r)
                    self.log(f"non-stream c{conc} {t.label}{f' (round {rnd + 1})' if self.a.rounds > 1 else ''}: "
                             f"{r['rps']:.0f}/s p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
                             f"non2xx {r['non2xx']} errors {r['socket_errors']}")
        for key, rs in runs.items():
            ordered = sorted(rs, key=lambda r: r["rps"])
            median = dict(ordered[len(ordered) // 2])
            median["rounds_rps"] = [round(r["rps"]) for r in rs]
            self.results["nonstream"][key] = median

    def stream_phase(self, targets: list[Target]) -> None:
        for t in targets:
            self.isolate(t)
            self.streams(t, 16, self.a.warmup)
            cpu0 = self.snapshot()
            r = self.streams(t, 16, self.a.duration)
            self.cpu_note(r, t, cpu0, r["streams"])
            self.results["streams"][t.key] = r
            self.log(f"streams c16 {t.label}: {r['streams_per_s']:.0f}/s ttfb p50 {r['ttfb_p50_ms']:.2f} ms "
                     f"p99 {r['ttfb_p99_ms']:.2f} ms errors {r['errors']} {r['error_kinds'] or ''}")
        for t in targets:
            if t.extra:
                continue
            self.isolate(t)
            r = self.streams(t, 16, max(self.a.duration, 2.0), model=PACED_MODEL)
            self.results["paced"][t.key] = r
            self.log(f"paced c16 {t.label}: ttfb p50 {r['ttfb_p50_ms']:.2f} ms, chunk delay p50 "
                     f"{r['chunk_delay_p50_ms']:.2f} p99 {r['chunk_delay_p99_ms']:.2f} max "
                     f"{r['chunk_delay_max_ms']:.2f} ms, chunks/stream min {r['chunks_min']:.0f}")

    def snapshot(self) -> dict:
        """CPU counters to tell, after a cell, what the server used and what else loaded the machine."""
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"t": time.monotonic(), "busy": machine_busy_s(), "kids": kids.ru_utime + kids.ru_stime,
                "pids": {p: cpu_s(p) for p in self.server_pids + [self.a.mock_pid] if p}}

    def cpu_note(self, r: dict, t: Target, before: dict, calls: int) -> None:
        """CPU time of the server under test per call, and the load of processes outside this benchmark
        (other people's work on a shared machine) in cores during the cell: a noisy cell shows it."""
        after = self.snapshot()
        used = {p: after["pids"][p] - c for p, c in before["pids"].items()}
        r["cpu_us_per_call"] = used.get(t.pid, 0.0) * 1e6 / calls if t.pid and calls else None
        ours = sum(used.values()) + after["kids"] - before["kids"]
        r["foreign_cores"] = max(0.0, (after["busy"] - before["busy"] - ours) / (after["t"] - before["t"]))

    def soak(self, target: Target, total: int, steps: int = 4) -> None:
        self.isolate(target)
        per = max(1, total // steps)
        done = 0
        self.results["soak"].append((0, rss_mb(target.pid)))
        for _ in range(steps):
            r = self.streams(target, 16, self.a.soak_seconds, stream=False, count=per)
            done += r["streams"]
            self.results["soak"].append((done, rss_mb(target.pid)))
            self.log(f"soak: {done} calls, RSS {self.results['soak'][-1][1]:.1f} MB, errors {r['errors']}")


def run_wrk(url: str, auth: str, body_path: str, conc: int, seconds: float, pin: list[str], label: str) -> dict:
    """One closed-loop wrk run (1 thread, ``conc`` connections) POSTing the body at ``body_path``: its
    BENCHJSON figures (bench/wrk/post.lua) with ``rps`` added."""
    env = {**os.environ, "BENCH_BODY": body_path, "BENCH_AUTH": auth}
    cmd = [*pin, "wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(Path(__file__).parent / "wrk" / "post.lua"), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result for {label}: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("BENCHJSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


# -- memory -----------------------------------------------------------------------
def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds used so far by ``pid`` (all its threads)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, *, below: float = 0.05, limit: float = 15.0) -> None:
    """Wait (at most ``limit`` s) until ``pid`` uses under ``below`` of a core over 0.3 s."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        c0 = cpu_s(pid)
        time.sleep(0.3)
        if cpu_s(pid) - c0 < below * 0.3:
            return


def rss_mb(pid: int | None) -> float:
    if not pid:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the table -------------------------------------------------------------------------
def cpu_col(r: dict) -> str:
    return "–" if r.get("cpu_us_per_call") is None else f"{r['cpu_us_per_call']:,.0f}"


def noise(r: dict) -> str:
    """Flag a cell during which processes outside the benchmark used a noticeable share of the cores."""
    f = r.get("foreign_cores") or 0.0
    return f" ⚠{f:.1f}" if f >= 0.1 else ""


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "–"


def render(b: Bench, targets: list[Target], meta: dict) -> str:
    R = b.results
    by = {t.key: t for t in targets}
    has_ll = "litellm" in by
    out: list[str] = []
    w = out.append
    w("## lightrelay benchmark\n")
    for k, v in meta.items():
        w(f"- {k}: {v}")
    w("")
    w("⚠N after a target: other processes on the machine (not this benchmark) used N cores during that cell.\n")
    w("### Non-stream calls (wrk, closed loop)\n")
    if b.a.rounds > 1:
        w(f"Each cell: the median of {b.a.rounds} rounds by req/s (the rounds' range in brackets); its other "
          "columns are that round's.\n")
    w("| conc | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s vs LiteLLM | p99 LiteLLM / this | server CPU µs/call |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for conc in (1, 16, 64):
        d = R["nonstream"].get(("direct", conc))
        ll = R["nonstream"].get(("litellm", conc))
        for t in targets:
            r = R["nonstream"].get((t.key, conc))
            if r is None:
                continue
            add50 = "–" if t.key == "direct" else ms(r["p50_us"] - d["p50_us"])
            add99 = "–" if t.key == "direct" else ms(r["p99_us"] - d["p99_us"])
            vs = ratio(r["rps"], ll["rps"]) if ll and t.key.startswith("lr-") else "–"
            p99r = ratio(ll["p99_us"], r["p99_us"]) if ll and t.key.startswith("lr-") else "–"
            bad = f" ⚠ {r['non2xx']} non-2xx, {r['socket_errors']} socket errors" if r["non2xx"] or r["socket_errors"] else ""
            spread = r.get("rounds_rps") or []
            rps = f"{r['rps']:,.0f}" + (f" ({min(spread):,}–{max(spread):,})" if len(spread) > 1 else "")
            w(f"| {conc} | {t.label}{bad}{noise(r)} | {rps} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {add50} | "
              f"{add99} | {vs} | {p99r} | {cpu_col(r)} |")
    w("")
    w("### Streams, concurrency 16, unpaced (10 chunks sent at once)\n")
    w("| target | streams/s | TTFB p50 ms | TTFB p99 ms | added TTFB p50 ms | added TTFB p99 ms | streams/s vs LiteLLM | server CPU µs/stream | errors |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    d = R["streams"].get("direct")
    ll = R["streams"].get("litellm")
    for t in targets:
        r = R["streams"].get(t.key)
        if r is None:
            continue
        a50 = "–" if t.key == "direct" else f"{r['ttfb_p50_ms'] - d['ttfb_p50_ms']:.2f}"
        a99 = "–" if t.key == "direct" else f"{r['ttfb_p99_ms'] - d['ttfb_p99_ms']:.2f}"
        vs = ratio(r["streams_per_s"], ll["streams_per_s"]) if ll and t.key.startswith("lr-") else "–"
        w(f"| {t.label}{noise(r)} | {r['streams_per_s']:,.0f} | {r['ttfb_p50_ms']:.2f} | {r['ttfb_p99_ms']:.2f} | {a50} | {a99} | "
          f"{vs} | {cpu_col(r)} | {r['errors']} |")
    w("")
    w(f"### Streams, concurrency 16, paced upstream ({meta_paced(b)})\n")
    w("Chunk delay = the mock's write of a chunk → the client's read of it (each chunk carries its send time).\n")
    w("| target | TTFB p50 ms | added TTFB p50 ms | chunk delay p50 ms | p99 ms | max ms | chunks/stream (min) | stream p50 ms |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    d = R["paced"].get("direct")
    for t in targets:
        r = R["paced"].get(t.key)
        if r is None:
            continue
        a50 = "–" if t.key == "direct" else f"{r['ttfb_p50_ms'] - d['ttfb_p50_ms']:.2f}"
        w(f"| {t.label} | {r['ttfb_p50_ms']:.2f} | {a50} | {r['chunk_delay_p50_ms']:.2f} | {r['chunk_delay_p99_ms']:.2f} | "
          f"{r['chunk_delay_max_ms']:.2f} | {r['chunks_min']:.0f} | {r['total_p50_ms']:.1f} |")
    w("")
    w("### Memory (RSS of the one worker process)\n")
    w("| process | idle, fresh MB | after the load above MB |")
    w("|---|---:|---:|")
    for key, label in (("lr", "lightrelay"), ("lr-scale", "lightrelay, PG+Redis"), ("litellm", "LiteLLM proxy")):
        m = R["memory"].get(key)
        if m:
            w(f"| {label} | {m['idle']:.1f} | {m['after']:.1f} |")
    if R["soak"]:
        w("")
        w("Soak (lightrelay OpenAI door, non-stream, concurrency 16): " +
          ", ".join(f"{n:,} calls → {mb:.1f} MB" for n, mb in R["soak"]))
        growth = R["soak"][-1][1] - R["soak"][1][1] if len(R["soak"]) > 2 else float("nan")
        w(f"(growth after the first quarter: {growth:+.1f} MB)")
    w("")
    w(targets_summary(b, has_ll))
    return "\n".join(out) + "\n"


def meta_paced(b: Bench) -> str:
    return f"{b.a.paced_chunks} chunks {b.a.paced_gap_ms} ms apart"


def targets_summary(b: Bench, has_ll: bool) -> str:
    """Each figure beside its target (issue 14); OpenAI door / light door where both are measured."""
    R = b.results
    ns, lines = R["nonstream"], ["### Against the targets (OpenAI door / light door)\n"]

    def both(f, keys=("lr-openai", "lr-light")) -> str:  # noqa: ANN001
        return " / ".join(f(k) for k in keys)

    def added(k: str, conc: int, q: str) -> str:
        return f"{(ns[(k, conc)][q] - ns[('direct', conc)][q]) / 1000:.2f} ms"

    if ("direct", 1) in ns:
        lines.append("- c1 added latency p50 ≤ 0.45 ms: " + both(lambda k: added(k, 1, "p50_us")))
        lines.append("- c1 added latency p99 ≤ 1.5 ms: " + both(lambda k: added(k, 1, "p99_us")))
    if has_ll:
        lines.append("- c16 throughput ≥ 30× LiteLLM: " + both(
            lambda k: ratio(ns[(k, 16)]["rps"], ns[("litellm", 16)]["rps"])))
    lines.append("- server CPU per call at c16 ≤ 220 µs: " + both(lambda k: cpu_col(ns[(k, 16)]) + " µs"))
    dp = R["paced"].get("direct")
    if dp:
        lines.append("- paced: first byte added ≤ 1 ms (p50): " + both(
            lambda k: f"{R['paced'][k]['ttfb_p50_ms'] - dp['ttfb_p50_ms']:.2f} ms"))
        lines.append("- paced: every chunk forwarded as it arrives (chunk delay p99 / max): " + both(
            lambda k: f"{R['paced'][k]['chunk_delay_p99_ms']:.2f} / {R['paced'][k]['chunk_delay_max_ms']:.2f} ms"))
    m = R["memory"].get("lr")
    if m:
        lines.append(f"- idle RSS per worker ≤ 70 MB: {m['idle']:.1f} MB")
    if ("lr-openai-scale", 16) in ns:
        scale = ("lr-openai-scale", "lr-light-scale")
        for conc in (16, 64):
            lines.append(f"- scale-out (PG+Redis) per worker ≥ 85 % of embedded at c{conc}: " + both(
                lambda k, c=conc: f"{ns[(k, c)]['rps'] / ns[(k.removesuffix('-scale'), c)]['rps']:.0%}", scale))
        lines.append("- scale-out c1 added latency p50 ≤ 0.8 ms: " + both(lambda k: added(k, 1, "p50_us"), scale))
    for k in ("lr-responses", "lr-messages"):
        if (k, 16) in ns and k in R["streams"]:
            lines.append(f"- {k.removeprefix('lr-')} door: {cpu_col(ns[(k, 16)])} µs CPU per call (c16), "
                         f"{cpu_col(R['streams'][k])} µs per stream of {b.a.paced_chunks} chunks")
    return "\n".join(lines)


def versions(a: argparse.Namespace) -> dict:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return "?"

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    repo = Path(__file__).resolve().parent.parent
    if a.source == "work tree":
        sha = run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
        dirty = run(["git", "-C", str(repo), "status", "--porcelain", "--", "lightrelay"])
        source = f"work tree at {sha}{' + uncommitted changes in lightrelay/' if dirty else ''}"
    else:
        source = f"lightrelay/ as committed at {a.source}"
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "lightrelay": f"{source}, 1 worker, "
                      "auth + quota reservation + usage recording on (SQLite), user with a finite daily limit (10⁹, never reached)",
        **({"lightrelay, scale-out": a.scale_info} if a.scale_info else {}),
        "LiteLLM": a.litellm_version or "skipped",
        "upstream": "Go mock (bench/tool, GOMAXPROCS=1), answers at once",
        "load": "wrk 1 thread (non-stream), bench/tool streams (Go, streams)",
        "cpu pinning": (f"servers under test on CPU {a.server_cpus}, mock + load generator on CPU {a.client_cpus}"
                        if a.client_cpus else "none") + "; the server not under test is paused (SIGSTOP) meanwhile",
        "durations": f"{a.duration:g} s per cell after a {a.warmup:g} s warm-up",
        "command": a.command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tool", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--mock", required=True)
    p.add_argument("--relay", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--relay-pid", type=int, required=True)
    p.add_argument("--mock-pid", type=int)
    p.add_argument("--litellm")
    p.add_argument("--scale-relay")
    p.add_argument("--scale-token")
    p.add_argument("--scale-pid", type=int)
    p.add_argument("--scale-info", default="")
    p.add_argument("--litellm-key")
    p.add_argument("--litellm-pid", type=int)
    p.add_argument("--litellm-version")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--soak", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--soak-seconds", type=float, default=300)
    p.add_argument("--paced-chunks", type=int, default=10)
    p.add_argument("--paced-gap-ms", type=int, default=20)
    p.add_argument("--client-cpus", default="")
    p.add_argument("--server-cpus", default="")
    p.add_argument("--command", default="bench/run")
    p.add_argument("--source", default="work tree")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    b = Bench(a)
    targets = [
        Target("direct", "direct to mock", f"{a.mock}/v1/chat/completions", None),
        Target("lr-openai", "lightrelay /v1 (OpenAI door)", f"{a.relay}/v1/chat/completions", a.token,
               pid=a.relay_pid),
        Target("lr-light", "lightrelay light door", f"{a.relay}/api/light/chat/createChatCompletion", None,
               light=True, token=a.token, pid=a.relay_pid),
        Target("lr-responses", "lightrelay /v1/responses", f"{a.relay}/v1/responses", a.token, pid=a.relay_pid,
               door="responses", extra=True),
        Target("lr-messages", "lightrelay /v1/messages (Anthropic)", f"{a.relay}/v1/messages", a.token,
               pid=a.relay_pid, door="messages", extra=True),
    ]
    if a.scale_relay:  # the same doors on a relay in scale-out mode (PostgreSQL + Redis), paired cell by cell
        targets += [
            Target("lr-openai-scale", "lightrelay /v1, PG+Redis", f"{a.scale_relay}/v1/chat/completions",
                   a.scale_token, pid=a.scale_pid),
            Target("lr-light-scale", "lightrelay light door, PG+Redis",
                   f"{a.scale_relay}/api/light/chat/createChatCompletion", None, light=True, token=a.scale_token,
                   pid=a.scale_pid),
        ]
    if a.litellm:
        targets.append(Target("litellm", "LiteLLM proxy", f"{a.litellm}/v1/chat/completions", a.litellm_key,
                              pid=a.litellm_pid))
    b.results["memory"]["lr"] = {"idle": rss_mb(a.relay_pid)}
    if a.scale_relay:
        b.results["memory"]["lr-scale"] = {"idle": rss_mb(a.scale_pid)}
    if a.litellm:
        b.results["memory"]["litellm"] = {"idle": rss_mb(a.litellm_pid)}
    meta = versions(a)
    try:
        b.nonstream(targets)
        b.stream_phase(targets)
        b.results["memory"]["lr"]["after"] = rss_mb(a.relay_pid)
        if a.scale_relay:
            b.results["memory"]["lr-scale"]["after"] = rss_mb(a.scale_pid)
        if a.litellm:
            b.results["memory"]["litellm"]["after"] = rss_mb(a.litellm_pid)
        if a.soak > 0:
            b.soak(targets[1], a.soak)
    finally:
        b.resume_all()
    table = render(b, targets, meta)
    print(table)
    Path(a.out).write_text(table)
    raw = {f"{k}": v for k, v in b.results.items() if k != "nonstream"}
    raw["nonstream"] = {f"{k}/c{c}": v for (k, c), v in b.results["nonstream"].items()}
    Path(a.out).with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
