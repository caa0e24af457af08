"""The relay's own OpenAPI 3.1 description, served at ``GET /openapi.json``.

Request bodies come from the pydantic models that validate them where a door has one
(``lightrelay.http.schemas``: the light and chat doors), so the description cannot drift
from what those doors accept. The other doors validate by hand (``lightrelay.translate.*``,
``embeddings.py``, ``images.py``): their JSON schemas are written here, from that code — its
required fields, types and bounds, no more — and take its lists of accepted keys and limits
from it. Response shapes are written here too, next to the statuses each operation documents
(DESIGN.md §1, §2). Each request body carries an example that a relay serving the example
models answers for real. The schemathesis run in ``tests/faults/test_schema_fuzz.py`` checks
the running relay against this document.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from lightrelay.http.embeddings import MAX_INPUTS
from lightrelay.http.images import MAX_IMAGES, MAX_PROMPT
from lightrelay.http.images import TEXT_PARAMS as IMAGE_TEXT_PARAMS
from lightrelay.http.render import ANTHROPIC_TYPES
from lightrelay.http.schemas import MODEL_NAME, LightBody, OpenAIBody
from lightrelay.settings import DEFAULT_MODELS
from lightrelay.translate import anthropic, completions, responses

REF = "#/components/schemas/{model}"

# -- schema pieces ---------------------------------------------------------------------------------

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
OBJ: dict[str, Any] = {"type": "object"}
NULL: dict[str, Any] = {"type": "null"}
ANY: dict[str, Any] = {"description": "accepted; no effect"}
MODEL = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": MODEL_NAME}
POSITIVE = {"type": "integer", "minimum": 1}
NOT_TRUE = {"not": {"const": True}}  # the door refuses true: lightrelay keeps no state
FALSY = {"enum": [False, None, 0, "", [], {}]}  # the door refuses any other value


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, NULL]}


def _nullable(props: dict[str, Any]) -> dict[str, Any]:
    """Optional fields where the door takes ``null`` as "not given"."""
    return {name: _null(schema) for name, schema in props.items()}


def _range(low: float, high: float) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high}


def _list(items: dict[str, Any], **bounds: int) -> dict[str, Any]:
    return {"type": "array", "items": items, **bounds}


def _object(props: dict[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    """An object with ``props``; other keys allowed unless ``extra`` says otherwise."""
    return {"type": "object", "properties": props, **({"required": list(required)} if required else {}), **extra}


def _closed(props: dict[str, Any], accepted: set[str], *required: str) -> dict[str, Any]:
    """A body whose door refuses unknown keys (400): the keys it reads, then the ones it takes and ignores."""
    ignored = {name: ANY for name in sorted(accepted - props.keys())}
    return _object({**props, **ignored}, *required, additionalProperties=False)


def _typed(kind: type | tuple[type, ...]) -> dict[str, Any]:
    """The JSON type of a Python type check in a door (``isinstance(value, kind)``, bools excluded)."""
    return {int: INT, str: STR, dict: OBJ}.get(kind, NUM)


# -- request bodies the doors check by hand ------------------------------------------------------

def _responses_body() -> dict[str, Any]:
    """``POST /v1/responses`` (``translate.responses.request_to_chat``)."""
    part = {"anyOf": [
        _object({"type": {"enum": ["input_text", "output_text", "text"]}, "text": STR}, "type", "text"),
        _object({"type": {"const": "refusal"}, "refusal": STR}, "type"),
        _object({"type": {"const": "input_image"}, "image_url": STR, "detail": STR}, "type", "image_url"),
    ]}
    item = {"anyOf": [
        _object({"type": {"const": "message"}, "role": {"enum": ["user", "assistant", "system", "developer"]},
                 "content": {"anyOf": [STR, _list(part)]}}, "role", "content"),
        _object({"type": {"const": "function_call"}, "call_id": STR, "name": STR, "arguments": STR},
                "type", "call_id", "name"),
        _object({"type": {"const": "function_call_output"}, "call_id": STR, "output": {}}, "type", "call_id"),
        _object({"type": {"const": "reasoning"}}, "type"),
    ]}
    tool = _object({"type": {"const": "function"}, "name": STR, "description": STR, "parameters": OBJ,
                    "strict": BOOL}, "type", "name")
    text_format = _object({"type": {"enum": ["text", "json_object", "json_schema"]}, "name": STR, "schema": OBJ,
                           "strict": BOOL, "description": STR})
    return _closed({
        "model": MODEL,
        "input": {"anyOf": [STR, _list(item, minItems=1)]},
        "stream": BOOL,
        **_nullable({
            "instructions": STR, "max_output_tokens": POSITIVE, "temperature": _range(0, 2), "top_p": _range(0, 1),
            "tools": _list(tool),
            "tool_choice": {"anyOf": [{"enum": ["auto", "none", "required"]},
                                      _object({"type": {"const": "function"}, "name": STR}, "type", "name")]},
            "parallel_tool_calls": BOOL, "text": _object({"format": text_format}), "user": STR, "metadata": OBJ}),
        "previous_response_id": {**NULL, "description": "refused: lightrelay keeps no responses"},
        "store": {**NOT_TRUE, "description": "true is refused: lightrelay keeps no responses"},
        "background": {**NOT_TRUE, "description": "true is refused: responses run in the foreground"},
    }, responses.ACCEPTED, "model", "input")


def _messages_body() -> dict[str, Any]:
    """``POST /v1/messages`` (``translate.anthropic.request_to_chat``)."""
    text = _object({"type": {"const": "text"}, "text": STR}, "type", "text")
    source = {"anyOf": [_object({"type": {"const": "base64"}, "media_type": STR, "data": STR}, "type", "data"),
                        _object({"type": {"const": "url"}, "url": STR}, "type", "url")]}
    block = {"anyOf": [
        text,
        _object({"type": {"const": "image"}, "source": source}, "type", "source"),
        _object({"type": {"const": "tool_use"}, "id": STR, "name": STR, "input": OBJ}, "type", "id", "name",
                description="assistant turns only"),
        _object({"type": {"const": "tool_result"}, "tool_use_id": STR, "is_error": BOOL,
                 "content": _null({"anyOf": [STR, _list(OBJ)]})}, "type", "tool_use_id",
                description="user turns only"),
        _object({"type": {"enum": ["thinking", "redacted_thinking"]}}, "type", description="skipped"),
    ]}
    message = _object({"role": {"enum": ["user", "assistant"]}, "content": {"anyOf": [STR, _list(block)]}},
                      "role", "content")
    return _closed({
        "model": MODEL,
        "max_tokens": POSITIVE,
        "messages": _list(message, minItems=1),
        "stream": BOOL,
        **_nullable({
            "system": {"anyOf": [STR, _list(text)]}, "temperature": _range(0, 1), "top_p": _range(0, 1),
            "stop_sequences": _list(STR, maxItems=4),
            "tools": _list(_object({"name": STR, "description": STR, "input_schema": OBJ}, "name")),
            "tool_choice": _object({"type": {"enum": ["auto", "any", "tool", "none"]}, "name": STR,
                                    "disable_parallel_tool_use": BOOL}, "type"),
            "metadata": _object({"user_id": STR})}),
    }, anthropic.ACCEPTED, "model", "max_tokens", "messages")


def _embeddings_body() -> dict[str, Any]:
    """``POST /v1/embeddings`` (``http.embeddings.embedding_params``): other keys only as null."""
    tokens = _list(INT, minItems=1)
    inputs = {"anyOf": [STR, tokens, _list(STR, minItems=1, maxItems=MAX_INPUTS),
                        _list(tokens, minItems=1, maxItems=MAX_INPUTS)]}
    return _object({"model": MODEL, "input": inputs,
                    **_nullable({"encoding_format": {"enum": ["float", "base64"]}, "dimensions": POSITIVE,
                                 "user": STR})},
                   "model", "input", additionalProperties=NULL)


def _images_body() -> dict[str, Any]:
    """``POST /v1/images/generations`` (``http.images.image_params``): other keys only as null."""
    prompt = {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT, "pattern": r"\S"}
    short = {"type": "string", "maxLength": 256}
    return _object({"model": MODEL, "prompt": prompt,
                    **_nullable({"n": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES},
                                 "response_format": {"enum": ["url", "b64_json"]}, "output_compression": INT,
                                 **{name: short for name in sorted(IMAGE_TEXT_PARAMS)}})},
                   "model", "prompt", additionalProperties=NULL)


def _completions_body() -> dict[str, Any]:
    """``POST /v1/completions`` (``translate.completions.request_to_chat``): other keys only as null."""
    passed = {name: _typed(kind) for name, kind in completions.PASSED.items()}
    return _object({
        "model": MODEL,
        "prompt": {"anyOf": [STR, _list(STR, minItems=1, maxItems=1)]},
        "stream": BOOL,
        **_nullable({**passed, "n": {"type": "integer", "minimum": 1, "maximum": 8},
                     "stop": {"anyOf": [STR, _list(STR, maxItems=4)]},
                     "stream_options": _object({"include_usage": BOOL}),
                     "best_of": {"const": 1}}),
        "echo": {**FALSY, "description": "not supported: the prompt is not echoed"},
        "suffix": NULL, "logprobs": NULL,
    }, "model", "prompt", additionalProperties=NULL)


# -- responses -----------------------------------------------------------------------------------

USAGE = {"type": "object"}
RESPONSE_SCHEMAS: dict[str, Any] = {
    "LightEnvelope": _object({"code": INT, "data": _null(OBJ), "message": STR}, "code", "data", "message"),
    "OpenAIError": _object({"error": _object({"message": STR, "type": STR, "param": _null(STR), "code": _null(STR)},
                                             "message", "type")}, "error"),
    "AnthropicError": _object({"type": {"const": "error"},
                               "error": _object({"type": {"enum": sorted({*ANTHROPIC_TYPES.values(), "api_error"})},
                                                 "message": STR}, "type", "message")}, "type", "error"),
    "ChatCompletion": _object({"id": STR, "object": {"const": "chat.completion"}, "created": INT, "model": STR,
                               "choices": _list(OBJ), "usage": USAGE}, "id", "object", "created", "model", "choices"),
    "TextCompletion": _object({"id": STR, "object": {"const": "text_completion"}, "created": INT, "model": STR,
                               "choices": _list(_object({"text": STR, "index": INT, "finish_reason": _null(STR)},
                                                        "text", "index", "finish_reason")),
                               "usage": USAGE}, "id", "object", "created", "model", "choices", "usage"),
    "Response": _object({"id": STR, "object": {"const": "response"}, "created_at": INT,
                         "status": {"enum": ["completed", "incomplete"]}, "model": STR, "output": _list(OBJ),
                         "output_text": STR, "usage": USAGE},
                        "id", "object", "created_at", "status", "model", "output", "output_text", "usage"),
    "AnthropicMessage": _object({"id": STR, "type": {"const": "message"}, "role": {"const": "assistant"},
                                 "model": STR, "content": _list(_object({"type": STR}, "type")),
                                 "stop_reason": STR, "stop_sequence": _null(STR),
                                 "usage": _object({"input_tokens": INT, "output_tokens": INT},
                                                  "input_tokens", "output_tokens")},
                                "id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"),
    "EmbeddingList": _object({"object": STR, "data": _list(OBJ), "model": STR, "usage": USAGE}, "data", "model"),
    "ImagesResponse": _object({"created": INT, "data": _list(OBJ)}, "data"),
    "Model": _object({"id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR}, "id", "object"),
    "ModelList": _object({"object": {"const": "list"}, "data": _list({"$ref": REF.format(model="Model")})},
                         "object", "data"),
    "ChannelStates": _object({"object": {"const": "list"}, "data": _list(_object({
        "name": STR, "state": {"enum": ["closed", "open", "half-open"]}, "failures": INT, "enabled": BOOL,
        "api_key": STR, "retry_in": NUM}, "name", "state", "failures", "enabled"))}, "object", "data"),
    "Health": _object({"status": {"const": "ok"}}, "status"),
}


# -- streams: each event as schemathesis and OpenAPI 3.1 read a text/event-stream schema ({event, data}) --

def _events(data: dict[str, Any], about: str) -> dict[str, Any]:
    """A ``text/event-stream`` reply: each event's ``data`` as ``data`` says."""
    return {"text/event-stream": {"schema": _object({"event": STR, "data": data}, "event", "data",
                                                    description=about)}}


def _json_text(schema: dict[str, Any]) -> dict[str, Any]:
    """An event's ``data``: JSON text holding ``schema``."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


OPENAI_ERROR = {"$ref": REF.format(model="OpenAIError")}
DONE = {"const": "[DONE]"}
LIGHT_STREAM = {"text/event-stream": {"schema": {
    "description": "not SSE: start852{…}end852 frames and the reply as raw text, then the connection closes"}}}
CHAT_STREAM = _events({"anyOf": [DONE, _json_text(OBJ)]},
                      "chat.completion.chunk objects (an upstream failure mid-stream: an error object), then [DONE]")
COMPLETION_STREAM = _events(
    {"anyOf": [DONE, _json_text({"anyOf": [
        _object({"object": {"const": "text_completion"}, "choices": _list(OBJ)}, "object", "choices"),
        OPENAI_ERROR]})]},
    "text_completion chunks (an upstream failure mid-stream: an error object), then [DONE]")
RESPONSE_STREAM = _events(
    _json_text(_object({"type": STR, "sequence_number": INT}, "type", "sequence_number")),
    "typed events named as their type: response.created … response.completed (or response.incomplete); "
    "an upstream failure mid-stream: error then response.failed")
MESSAGE_STREAM = _events(_json_text(_object({"type": STR}, "type")),
                         "message_start … message_stop; an upstream failure mid-stream: an error event")

# -- operations ------------------------------------------------------------------------------------

CALL_ERRORS = {"400": "body not JSON, nested too deeply, or a field missing or invalid",
               "401": "token missing, unknown or revoked", "403": "account disabled or model not allowed",
               "404": "unknown model", "413": "body over the size limit",
               "429": "today's calls used up, or too many invalid tokens from this address",
               "500": "internal error", "502": "upstream failed", "503": "no upstream available, relay busy",
               "504": "upstream timed out"}
AUTH_ERRORS = {"401": "token missing, unknown or revoked", "403": "account disabled",
               "429": "too many invalid tokens from this address"}
BEARER = [{"bearer": []}]

# Example bodies name these models; a relay with a channel serving them answers the examples for real.
CHAT_MODEL = DEFAULT_MODELS[0]
EXAMPLE_MODELS = {"chat": CHAT_MODEL, "completion": "gpt-3.5-turbo-instruct", "embedding": "text-embedding-3-small",
                  "image": "dall-e-3"}
HELLO = [{"role": "user", "content": "Hello"}]


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}


def _errors(schema: str, codes: dict[str, str]) -> dict[str, Any]:
    return {code: {"description": text, "content": _json(schema)} for code, text in codes.items()}


def _call(op_id: str, summary: str, body: str, examples: dict[str, Any], reply: str, replies: str, *,
          stream: dict[str, Any] | None = None, errors: dict[str, str] = CALL_ERRORS, error: str = "OpenAIError",
          security: list[dict[str, list[str]]] | None = BEARER) -> dict[str, Any]:
    """A door taking a JSON ``body`` (with its ``examples``, by name) and answering ``reply`` (or the
    ``stream`` content); ``replies`` says what the 200 holds; each of ``errors`` answered as ``error``."""
    request = {"application/json": {"schema": {"$ref": REF.format(model=body)},
                                    "examples": {name: {"value": value} for name, value in examples.items()}}}
    content = {**_json(reply), **(stream or {})}
    return {"operationId": op_id, "summary": summary, **({"security": security} if security else {}),
            "requestBody": {"required": True, "content": request},
            "responses": {"200": {"description": replies, "content": content}, **_errors(error, errors)}}


def _streamed(body: dict[str, Any], **switch: Any) -> dict[str, Any]:
    """Examples: ``body`` as it is, and with the stream switch on."""
    return {"reply": body, "stream": {**body, **(switch or {"stream": True})}}


def _operations() -> dict[str, dict[str, Any]]:
    chat, completion = EXAMPLE_MODELS["chat"], EXAMPLE_MODELS["completion"]
    light = _call("createChatCompletionLight", "Chat, light protocol (token in the body, or Bearer)", "LightBody",
                  _streamed({"model": chat, "messages": HELLO}, params={"stream": True}), "LightEnvelope",
                  "a completion in the {code, data, message} envelope (with params.stream: the light stream)",
                  stream=LIGHT_STREAM, error="LightEnvelope", security=None)
    openai = _call("createChatCompletion", "Chat, OpenAI protocol", "OpenAIBody",
                   _streamed({"model": chat, "messages": HELLO}), "ChatCompletion",
                   "a chat.completion (with stream: SSE)", stream=CHAT_STREAM)
    responses = _call("createResponse", "OpenAI Responses API (stateless)", "ResponsesBody",
                      _streamed({"model": chat, "input": "Hello"}), "Response",
                      "a response object (with stream: SSE)", stream=RESPONSE_STREAM)
    messages = _call("createMessage", "Anthropic Messages API (x-api-key or Bearer)", "MessagesBody",
                     _streamed({"model": chat, "max_tokens": 256, "messages": HELLO}), "AnthropicMessage",
                     "a message (with stream: SSE)", stream=MESSAGE_STREAM, error="AnthropicError",
                     security=[{"apiKey": []}, {"bearer": []}])
    embeddings = _call("createEmbeddings", "Embeddings, relayed to a channel that makes them", "EmbeddingsBody",
                       {"reply": {"model": EXAMPLE_MODELS["embedding"], "input": ["Hello", "world"]}},
                       "EmbeddingList", "the upstream's list of embeddings",
                       errors={**CALL_ERRORS, "404": "unknown model, or no channel for it makes embeddings"})
    images = _call("createImages", "Image generation (its own daily image limit)", "ImagesBody",
                   {"reply": {"model": EXAMPLE_MODELS["image"], "prompt": "a lighthouse at dawn"}},
                   "ImagesResponse", "the upstream's images",
                   errors={**CALL_ERRORS, "404": "unknown model, or no channel for it makes images",
                           "429": "today's calls or images used up, or too many invalid tokens from this address"})
    legacy = _call("createCompletion", "Legacy text completions (one prompt)", "CompletionsBody",
                   _streamed({"model": completion, "prompt": "Say hello"}), "TextCompletion",
                   "a text_completion (with stream: SSE)", stream=COMPLETION_STREAM)
    return {"light": light, "chat": openai, "responses": responses, "messages": messages,
            "embeddings": embeddings, "images": images, "completions": legacy}


def _get(op_id: str, summary: str, reply: str, replies: str, errors: dict[str, str],
         **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "security": BEARER, **extra,
            "responses": {"200": {"description": replies, "content": _json(reply)}, **_errors("OpenAIError", errors)}}


def build() -> dict[str, Any]:
    _, defs = models_json_schema([(LightBody, "validation"), (OpenAIBody, "validation")], ref_template=REF)
    schemas = {**defs.get("$defs", {}), "ResponsesBody": _responses_body(), "MessagesBody": _messages_body(),
               "EmbeddingsBody": _embeddings_body(), "ImagesBody": _images_body(),
               "CompletionsBody": _completions_body(), **RESPONSE_SCHEMAS}
    ops = _operations()
    model = {"name": "model", "in": "path", "required": True, "schema": STR, "example": CHAT_MODEL}
    health = {"operationId": "healthz", "responses": {"200": {"description": "ready", "content": _json("Health")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lightrelay", "version": "1", "description": "A self-hosted LLM API relay"},
        "paths": {
            "/api/light/chat/createChatCompletion": {"post": ops["light"]},
            "/v1/chat/completions": {"post": ops["chat"]},
            "/v1/responses": {"post": ops["responses"]},
            "/v1/messages": {"post": ops["messages"]},
            "/v1/embeddings": {"post": ops["embeddings"]},
            "/v1/images/generations": {"post": ops["images"]},
            "/v1/completions": {"post": ops["completions"]},
            "/v1/models": {"get": _get("listModels", "The relay's models", "ModelList", "the relay's models",
                                       AUTH_ERRORS)},
            "/v1/models/{model}": {"get": _get("retrieveModel", "One model the relay serves", "Model", "the model",
                                               {**AUTH_ERRORS, "404": "the relay serves no such model"},
                                               parameters=[model])},
            "/api/admin/channels/state": {"get": _get("channelStates", "Channels and their breaker state (admins "
                                                      "only)", "ChannelStates", "every channel, API keys masked",
                                                      {**AUTH_ERRORS, "403": "not an admin account"})},
            "/healthz": {"get": health},
        },
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    }


@cache
def _document() -> bytes:
    import orjson

    return orjson.dumps(build())


async def openapi_json(request: Request) -> Response:
    return Response(_document(), media_type="application/json")


__all__ = ["EXAMPLE_MODELS", "build", "openapi_json"]
