"""Request validation shared by both doors: messages and OpenAI parameters.

Types are strict (a string is not a number) and unknown parameters are refused,
as OpenAI itself does, so a typo never silently does nothing.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lightrelay.errors import BadRequest

MODEL_NAME = r"^[^\x00-\x1f\x7f]+$"  # no control characters (CR/LF can never reach a header or a log line)


class ContentPart(BaseModel):
    """One part of a multi-part message content (``text``, ``image_url``, …; other fields kept)."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str = Field(max_length=64)
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "user", "assistant", "tool", "function", "developer"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False


RELAY_SWITCHES = {"stream", "stream_options", "include_usage"}


class Params(BaseModel):
    """OpenAI chat parameters the relay accepts and passes on."""

    model_config = ConfigDict(extra="forbid", strict=True)

    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: StreamOptions | None = None
    include_usage: bool = False  # light door: ask for the final usage frame
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=256)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def upstream(self) -> dict[str, Any]:
        """What goes to the model: set values only, the relay's own switches left out."""
        out = self.model_dump(exclude_none=True, include=_PASSED_ON)
        if out.get("n") == 1:
            del out["n"]
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise BadRequest("stop 最多 4 个", "stop takes at most 4 sequences", param="stop")
        return out

    @property
    def wants_usage(self) -> bool:
        return self.include_usage or bool(self.stream_options and self.stream_options.include_usage)


_PASSED_ON = set(Params.model_fields) - RELAY_SWITCHES


class LightBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(None, min_length=1, max_length=200, pattern=MODEL_NAME)
    token: str | None = Field(None, max_length=200)
    messages: list[Message] | None = None
    prompt: str | None = None  # the older form of the protocol
    params: Params = Field(default_factory=Params)


class OpenAIBody(Params):
    model: str = Field(min_length=1, max_length=200, pattern=MODEL_NAME)
    messages: list[Message]


_ZH_TYPES = {
    "missing": "缺少字段", "extra_forbidden": "不支持的参数", "string_type": "应为字符串",
    "int_type": "应为整数", "float_type": "应为数字", "bool_type": "应为布尔值", "list_type": "应为数组",
    "dict_type": "应为对象", "literal_error": "取值不在允许范围", "greater_than_equal": "数值太小",
    "less_than_equal": "数值太大", "too_short": "太短", "too_long": "太长", "model_type": "应为对象",
    "string_pattern_mismatch": "含有不允许的字符",
}


_UNION_TAG = re.compile(r"^(function-|json-or-python|str$|int$|float$|bool$|none$|list\[|dict\[|[A-Z])")


def validate(model: type[BaseModel], data: Any) -> Any:
    """Validate ``data``; the first problem becomes a BadRequest naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        err = max(errors, key=lambda e: len(e["loc"]))  # in a union, the branch that got furthest
        loc = ".".join(str(p) for p in err["loc"] if not _UNION_TAG.match(str(p)))
        loc = loc or "body"
        zh = _ZH_TYPES.get(err["type"], "格式不正确")
        raise BadRequest(f"参数错误 {loc}: {zh}", f"invalid {loc}: {err['msg']}", param=loc) from None


def check_count(data: Any, max_messages: int) -> Any:
    """Refuse a huge ``messages`` list before validating every item of it."""
    if isinstance(data, dict) and isinstance(data.get("messages"), list) and len(data["messages"]) > max_messages:
        raise BadRequest(f"messages 太多（最多 {max_messages} 条）",
                         f"too many messages (at most {max_messages})", param="messages")
    return data


def check_messages(messages: list[Message] | None, max_messages: int) -> list[dict[str, Any]]:
    if not messages:
        raise BadRequest("messages 不能为空", "messages must be a non-empty list", param="messages")
    if len(messages) > max_messages:
        raise BadRequest(f"messages 太多（最多 {max_messages} 条）",
                         f"too many messages (at most {max_messages})", param="messages")
    return [m.model_dump(exclude_none=True) for m in messages]
