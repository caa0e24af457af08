"""Counting tokens offline with OpenAI's own encodings (bundled by ``quicktok``).

Used only when an upstream gives no usage. Chat prompts are counted the way
OpenAI documents for its chat models: 3 tokens per message, 1 per name, 3 to
prime the reply.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import quicktok


@lru_cache(maxsize=8)
def _encoding(name: str):  # noqa: ANN202
    return quicktok.get_encoding(name)


def encoding_name(model: str) -> str:
    m = model.lower()
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def count_text(text: str, model: str) -> int:
    return len(_encoding(encoding_name(model)).encode(text)) if text else 0


def count_messages(messages: list[dict[str, Any]], model: str) -> int:
    enc = _encoding(encoding_name(model))
    total = 3
    for msg in messages:
        total += 3 + len(enc.encode(_text_of(msg.get("content")))) + len(enc.encode(str(msg.get("role", ""))))
        if msg.get("name"):
            total += 1 + len(enc.encode(str(msg["name"])))
    return total
