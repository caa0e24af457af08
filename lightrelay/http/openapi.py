"""The relay's own OpenAPI 3.1 description, served at ``GET /openapi.json``.

Request bodies come from the pydantic models that validate them
(``lightrelay.http.schemas``), so the description cannot drift from what the
doors accept; response shapes are written here, next to the statuses each
operation documents (DESIGN.md §1, §2). The schemathesis run in
``tests/faults/test_schema_fuzz.py`` checks the running relay against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from lightrelay.http.schemas import LightBody, OpenAIBody

REF = "#/components/schemas/{model}"
NULLABLE_STR = {"anyOf": [{"type": "string"}, {"type": "null"}]}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "LightEnvelope": {
        "type": "object", "required": ["code", "data", "message"],
        "properties": {"code": {"type": "integer"}, "data": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                       "message": {"type": "string"}},
    },
    "OpenAIError": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type"],
                                 "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                                "param": NULLABLE_STR, "code": NULLABLE_STR}}},
    },
    "ChatCompletion": {
        "type": "object", "required": ["id", "object", "created", "model", "choices"],
        "properties": {"id": {"type": "string"}, "object": {"const": "chat.completion"},
                       "created": {"type": "integer"}, "model": {"type": "string"},
                       "choices": {"type": "array", "items": {"type": "object"}},
                       "usage": {"type": "object"}},
    },
    "ModelList": {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"}}}}},
    },
    "ChannelStates": {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["name", "state", "failures", "enabled"],
            "properties": {"name": {"type": "string"},
                           "state": {"enum": ["closed", "open", "half-open"]},
                           "failures": {"type": "integer"}, "enabled": {"type": "boolean"},
                           "api_key": {"type": "string"}, "retry_in": {"type": "number"}}}}},
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
}

STREAM = {"text/event-stream": {"schema": {"type": "string"}}}
LIGHT_ERRORS = {"400": "body not JSON, nested too deeply, bad messages or parameters",
                "401": "token missing, unknown or revoked", "403": "account disabled or model not allowed",
                "404": "unknown model", "413": "body over the size limit",
                "429": "today's calls used up, or too many invalid tokens from this address",
                "500": "internal error", "502": "upstream failed", "503": "no upstream available, relay busy",
                "504": "upstream timed out"}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}


def _errors(schema: str, codes: dict[str, str]) -> dict[str, Any]:
    return {code: {"description": text, "content": _json(schema)} for code, text in codes.items()}


def build() -> dict[str, Any]:
    _, defs = models_json_schema([(LightBody, "validation"), (OpenAIBody, "validation")], ref_template=REF)
    schemas = {**defs.get("$defs", {}), **RESPONSE_SCHEMAS}
    body = {"required": True, "content": _json("LightBody")}
    light = {
        "operationId": "createChatCompletionLight", "summary": "Chat, light protocol (token in the body)",
        "requestBody": body,
        "responses": {"200": {"description": "a completion in the {code, data, message} envelope; with "
                              "params.stream, start852{…}end852 frames and raw text",
                              "content": {**_json("LightEnvelope"), **STREAM}},
                      **_errors("LightEnvelope", LIGHT_ERRORS)},
    }
    openai_errors = dict(LIGHT_ERRORS)
    chat = {
        "operationId": "createChatCompletion", "summary": "Chat, OpenAI protocol", "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": _json("OpenAIBody")},
        "responses": {"200": {"description": "a chat.completion, or with stream: SSE chunks then [DONE]",
                              "content": {**_json("ChatCompletion"), **STREAM}},
                      **_errors("OpenAIError", openai_errors)},
    }
    auth_errors = {"401": "token missing, unknown or revoked", "403": "account disabled",
                   "429": "too many invalid tokens from this address"}
    models = {"operationId": "listModels", "security": [{"bearer": []}],
              "responses": {"200": {"description": "the relay's models", "content": _json("ModelList")},
                            **_errors("OpenAIError", auth_errors)}}
    states = {"operationId": "channelStates", "summary": "Channels and their breaker state (admins only)",
              "security": [{"bearer": []}],
              "responses": {"200": {"description": "every channel, API keys masked",
                                    "content": _json("ChannelStates")},
                            **_errors("OpenAIError", {**auth_errors, "403": "not an admin account"})}}
    health = {"operationId": "healthz", "responses": {"200": {"description": "ready", "content": _json("Health")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lightrelay", "version": "1", "description": "A self-hosted LLM API relay"},
        "paths": {
            "/api/light/chat/createChatCompletion": {"post": light},
            "/v1/chat/completions": {"post": chat},
            "/v1/models": {"get": models},
            "/api/admin/channels/state": {"get": states},
            "/healthz": {"get": health},
        },
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@cache
def _document() -> bytes:
    import orjson

    return orjson.dumps(build())


async def openapi_json(request: Request) -> Response:
    return Response(_document(), media_type="application/json")


__all__ = ["build", "openapi_json"]
