"""The one error tree of lightrelay.

Services, providers and the pipeline raise these; only ``lightrelay.http.render``
turns them into wire shapes (the light ``{code, data, message}`` envelope or the
OpenAI ``{"error": {...}}`` object). Nothing below the HTTP layer knows about HTTP
responses, only about the status a failure maps to.

    RelayError                       status  OpenAI type
    ├── BadRequest                   400     invalid_request_error
    ├── Unauthorized                 401     authentication_error
    ├── Forbidden                    403     permission_error
    ├── NotFound                     404     not_found_error (model_not_found)
    │   └── UnknownPath              404     invalid_request_error (no such URL under /v1)
    ├── MethodNotAllowed             405     invalid_request_error (the URL exists, not the method)
    ├── Conflict                     409     invalid_request_error (a redemption code already used)
    ├── Gone                         410     invalid_request_error (an expired redemption code)
    ├── PayloadTooLarge              413     invalid_request_error
    ├── TooManyRequests              429     rate_limit_error   (carries retry_after)
    │   ├── QuotaExceeded            429     daily count used up
    │   └── CallsInFlight            429     the rest of the count is held by calls still running
    ├── ClientGone                   499     the caller hung up before the reply (nothing is sent)
    └── UpstreamFailure              5xx     the model could not answer
        ├── UpstreamError            502     bad status / broken reply from upstream
        ├── Unavailable              503     no channel, relay busy (carries retry_after)
        └── UpstreamTimeout          504     upstream too slow

``ConfigError`` stands apart: a setting is missing or wrong. It stops a command or the
start of the relay (the CLI prints it as one line with the remedy, exit code 2), never a call.

Each error carries a message in Chinese and English; ``message_for(lang)``
picks one. ``retryable`` on an UpstreamFailure says whether the router may try
the next channel (only true before any reply byte went to the caller).
"""

from __future__ import annotations


class RelayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    headers: dict[str, str] | None = None  # extra response headers (a token's RPM: x-ratelimit-*)

    def __init__(
        self,
        zh: str,
        en: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(en or zh)
        self.zh = zh
        self.en = en or zh
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def message_for(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class BadRequest(RelayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(RelayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RelayError):
    status = 403
    type = "permission_error"


class NotFound(RelayError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class UnknownPath(NotFound):
    type = "invalid_request_error"
    code = "unknown_url"


class MethodNotAllowed(RelayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(RelayError):
    """The thing was already done (a redemption code already used)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class Gone(RelayError):
    """The thing is no longer valid (an expired redemption code)."""

    status = 410
    type = "invalid_request_error"
    code = "gone"


class PayloadTooLarge(RelayError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class TooManyRequests(RelayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class TooManyGuesses(TooManyRequests):
    """Too many unknown API tokens from the caller's address: every call from it is refused for a while."""

    code = "too_many_invalid_tokens"

    def __init__(self, wait: int) -> None:
        super().__init__("无效令牌尝试过多，请稍后再试",
                         f"too many invalid API tokens from this address; try again in {wait} s", retry_after=wait)


class QuotaExceeded(TooManyRequests):
    code = "daily_limit_reached"


class CallsInFlight(TooManyRequests):
    """Refused only because calls still in progress hold the rest of today's count (they may be
    refunded): retry in a few seconds."""

    code = "calls_in_flight"


class ClientGone(RelayError):
    """The caller closed the connection while the relay was still waiting for the model."""

    status = 499
    type = "client_gone"
    code = "client_gone"


class UpstreamFailure(RelayError):
    """The model could not answer. ``retryable``: another channel may be tried."""

    status = 502
    type = "upstream_error"
    retryable = True


class UpstreamError(UpstreamFailure):
    status = 502
    code = "upstream_error"


class Unavailable(UpstreamFailure):
    status = 503
    type = "service_unavailable"
    code = "unavailable"


class UpstreamTimeout(UpstreamFailure):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""
