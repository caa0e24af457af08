"""What the Anthropic and Gemini translations cost, in CPU time (issue 12's targets: at most 50 µs per
call, at most 10 µs per streamed event). Measures exactly what an Anthropic/Gemini-typed channel adds
to a call over an OpenAI one: building the upstream request (translation + JSON encoding) and turning
the whole reply into a ``chat.completion``; and, per streamed event, parsing the ``data:`` payload and
turning it into a ``chat.completion.chunk``.

    .venv/bin/python bench/micro_translate.py [N]      (exits 1 if a target is missed)
"""

from __future__ import annotations

import sys
import time

import orjson

from lightrelay.translate.anthropic import ChatChunks, completion_from_message, to_anthropic_request
from lightrelay.translate.gemini import GeminiChunks, completion_from_gemini, to_gemini_request

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Germany?"}]
PARAMS = {"max_tokens": 256, "temperature": 0.7, "stop": ["\n\n"]}
REPLY = orjson.dumps({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                      "content": [{"type": "text", "text": "Berlin."}], "stop_reason": "end_turn",
                      "stop_sequence": None, "usage": {"input_tokens": 40, "output_tokens": 3,
                                                       "cache_creation_input_tokens": 0,
                                                       "cache_read_input_tokens": 0}})
EVENT = orjson.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ber"}})
G_REPLY = orjson.dumps({"candidates": [{"content": {"parts": [{"text": "Berlin."}], "role": "model"},
                                        "finishReason": "STOP", "index": 0}],
                        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 3, "totalTokenCount": 43}})
G_EVENT = orjson.dumps({"candidates": [{"content": {"parts": [{"text": "Ber"}], "role": "model"}, "index": 0}],
                        "usageMetadata": {"promptTokenCount": 40}, "modelVersion": "gemini-2.5-flash"})


def per_call(fn, n: int) -> float:
    for _ in range(min(n, 1000)):
        fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def anthropic_call() -> None:
    orjson.dumps(to_anthropic_request(MESSAGES, PARAMS, model="claude-sonnet-4-5", default_max_tokens=4096))
    completion_from_message(orjson.loads(REPLY), model="gpt-4", created=0)


def gemini_call() -> None:
    orjson.dumps(to_gemini_request(MESSAGES, PARAMS))
    completion_from_gemini(orjson.loads(G_REPLY), model="gpt-4", created=0)


def main(n: int) -> int:
    chunks = ChatChunks(model="gpt-4", created=0)
    g_chunks = GeminiChunks(model="gpt-4", created=0)
    rows = [("anthropic", "per call", per_call(anthropic_call, n), 50.0),
            ("anthropic", "per streamed event", per_call(lambda: chunks.feed(orjson.loads(EVENT)), n * 5), 10.0),
            ("gemini", "per call", per_call(gemini_call, n), 50.0),
            ("gemini", "per streamed event", per_call(lambda: g_chunks.feed(orjson.loads(G_EVENT)), n * 5), 10.0)]
    missed = 0
    for provider, what, us, target in rows:
        ok = us <= target
        missed += not ok
        print(f"{provider:9} translation {what:18} {us:6.2f} µs CPU  (target ≤ {target:.0f} µs: "
              f"{'met' if ok else 'MISSED'})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
