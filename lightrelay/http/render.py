"""The one place errors become responses: the light envelope, the OpenAI error object, or
Anthropic's ``{"type": "error", "error": {...}}`` (the Messages door)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import RelayError

log = logging.getLogger("lightrelay.http")

CORS = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "x-request-id, retry-after, x-ratelimit-limit-requests, "
    "x-ratelimit-remaining-requests, x-ratelimit-reset-requests",
}


def lang_of(request: Request) -> str:
    return "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"


class JSON(Response):
    """A JSON response, its header list built at once (Starlette's ``init_headers`` costs more per call)."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body = orjson.dumps(content)
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        if headers:
            self.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _headers(exc: RelayError, extra: dict[str, str] | None) -> dict[str, str]:
    headers = dict(CORS)
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    if exc.status == 429 and exc.code == "daily_limit_reached":
        headers["x-should-retry"] = "false"
    elif exc.status == 429 and exc.code == "calls_in_flight":
        headers["x-should-retry"] = "true"
    if exc.headers:
        headers.update(exc.headers)
    if extra:
        headers.update(extra)
    return headers


def light_error(exc: RelayError, lang: str, extra: dict[str, str] | None = None) -> Response:
    body = {"code": exc.status, "data": None, "message": exc.message_for(lang)}
    return JSON(body, status_code=exc.status, headers=_headers(exc, extra))


def openai_error_body(exc: RelayError, lang: str) -> dict[str, Any]:
    return {"error": {"message": exc.message_for(lang), "type": exc.type, "param": exc.param, "code": exc.code}}


def openai_error(exc: RelayError, lang: str, extra: dict[str, str] | None = None) -> Response:
    return JSON(openai_error_body(exc, lang), status_code=exc.status, headers=_headers(exc, extra))


# Anthropic's error types by status (its SDK picks its exception class from the status)
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                   429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def anthropic_error_body(exc: RelayError, lang: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(exc.status, "api_error"),
                                       "message": exc.message_for(lang)}}


def anthropic_error(exc: RelayError, lang: str, extra: dict[str, str] | None = None) -> Response:
    return JSON(anthropic_error_body(exc, lang), status_code=exc.status, headers=_headers(exc, extra))


def internal(exc: Exception) -> RelayError:
    """An unexpected failure, logged with its traceback, as a clean 500 in the door's own shape."""
    log.error("unexpected error answering a call", exc_info=exc)
    return RelayError("服务器内部错误", "internal server error", code="internal_error")
