"""Translation between the wire formats the relay speaks and its own: OpenAI chat completions.

Inside the relay everything is a chat call (``providers.base.ChatCall`` in, ``chat.completion``
/ ``chat.completion.chunk`` dicts out). These modules are pure functions over dicts (and small
stateful classes fed one stream event at a time): no I/O, no HTTP, importable from both the
doors (``lightrelay.http``) and the provider adaptors (``lightrelay.providers``).

    anthropic.py   Anthropic Messages <-> chat, both directions: the door side (Messages
                   request -> chat; chat reply/chunks -> Messages reply/events) and the provider
                   side (chat -> Anthropic request; Anthropic reply/events -> chat). One set of
                   shared tables at the top of the module.
    responses.py   OpenAI Responses API <-> chat (the door side only).
    gemini.py      chat <-> Gemini generateContent (the provider side only).

Per-event code stays plain (no pydantic, orjson for JSON): streams translate every event.
"""
