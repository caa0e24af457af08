"""The provider protocol: how the relay talks to a model, whatever serves it.

A provider turns one ``ChatCall`` into either a whole ``chat.completion`` dict
(``complete``) or an async iterator of ``chat.completion.chunk`` dicts
(``stream``). Both speak OpenAI's JSON shapes, so the doors never care which
provider answered.

Rules every provider keeps:

- Failures are raised as ``lightrelay.errors.UpstreamFailure`` subclasses
  (``UpstreamError`` 502, ``Unavailable`` 503, ``UpstreamTimeout`` 504). The
  router tries the next channel only when nothing has been yielded yet.
- ``stream`` yields chunks as they come; when the caller stops iterating (the
  client went away) and closes the iterator (``aclose``), the provider cancels
  its upstream request or generation promptly.
- A streamed call asks for usage; when the model gives it, the last chunk has
  ``"usage"`` (and ``choices: []``), exactly as OpenAI's
  ``stream_options.include_usage`` does. Providers always try to send it; the
  doors decide whether the caller sees it.
- ``call.model`` is the channel's own model name (already mapped);
  ``call.public_model`` is what the caller asked for and what replies must say.

Optional methods, for calls other than chat (``call.messages`` is empty, ``call.params`` holds
the OpenAI request without ``model``): ``embed(call)`` → an OpenAI embeddings reply,
``images(call)`` → an OpenAI images reply. A provider without one (the local model, chat-only
upstream types) is never given such a call: the relay skips its channels.

The HTTP providers (``providers/http.py``) also have ``keys`` (a ``keys.KeyRing``: the router skips
a channel whose keys are all retired) and ``list_models()`` (``lightrelay channel models``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class ChatCall:
    messages: list[dict[str, Any]]
    model: str  # the channel's own name for the model
    public_model: str  # the name the caller used
    params: dict[str, Any] = field(default_factory=dict)  # validated OpenAI params, no model/messages/stream
    timeout: float | None = None  # per-channel override of the total time limit, seconds


class Provider(Protocol):
    kind: str  # "openai" | "local"

    async def complete(self, call: ChatCall) -> dict[str, Any]: ...

    def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]: ...

    async def close(self) -> None: ...
