"""OpenAI's wire format as this server speaks it: the error shape, the request bodies, and
reading a body (size limit, JSON, validation) into one of them.

Validation failures become OpenAI-shaped 400s naming the offending parameter, so clients see
``{"error": {"message", "type", "param", "code"}}`` whatever went wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

VERSION_HEADER = "X-Sluice-Model-Version"


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def version_headers(version: str | None) -> dict[str, str]:
    """The header naming the model version that answered (none while nothing is served)."""
    return {VERSION_HEADER: version} if version else {}


# ------------------------------------------------------------------ request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


class GenerationBody(_Body):
    """The sampling and streaming fields both generation endpoints share."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    ignore_eos: bool = False  # vLLM's extra parameter: generate max_tokens even past end-of-turn (load tests)
    min_tokens: int = Field(0, ge=0)  # vLLM's extra parameter: no end of turn before this many tokens


class ChatRequest(GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(GenerationBody):
    prompt: str | list[str]


class FeedbackRequest(_Body):
    response_id: str = Field(min_length=1)
    rating: StrictInt = Field(ge=1, le=5)
    preferred: str | None = None
    comment: str | None = Field(None, max_length=10_000)


# ------------------------------------------------------------------ reading a body

BodyT = TypeVar("BodyT", bound=BaseModel)
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal", "json"}


def validation_error(error: ValidationError) -> ApiError:
    first = error.errors()[0]
    # pydantic's location mixes field names with union-member tags ("str", "list[...]"): keep the fields
    parts = [str(p) for p in first["loc"] if isinstance(p, int) or (
        re.fullmatch(r"[a-z_]+", str(p)) and str(p).split("[")[0].lower() not in _TYPE_TAGS)]
    param = ".".join(parts) or None
    if first["type"] == "missing":
        return ApiError(400, f"'{param}' is required", param=param, code="missing_required_parameter")
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"invalid '{param}': {message}" if param else message, param=param, code="invalid_value")


async def read_body(request: Any, model: type[BodyT], limit: int) -> BodyT:
    """The request's JSON body as ``model``; 413 past ``limit`` bytes, 400 naming the first invalid
    parameter."""
    data = await read_json(request, limit)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_error(error) from None


async def read_json(request: Any, limit: int) -> dict[str, Any]:
    """The JSON object in the body; 413 past ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"request body is larger than {limit} bytes (serving.max_body_bytes)",
                         code="request_too_large")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError:
            raise ApiError(400, f"invalid Content-Length header {declared!r}") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    return data
