"""OpenAI Chat Completions wire models: the request we accept and the objects we emit.

Pure: pydantic and the standard library. Requests are pydantic models (validated, lenient on unknown
fields); responses are TypedDicts so what we emit is exactly the OpenAI shape, key for key.

Unlike cfai's other modules, no `from __future__ import annotations`: the interpreter evaluates these classes'
annotations once as it runs the class bodies, instead of pydantic (and TypedDict) compiling and evaluating each
as text when the class is made: 33.5 -> 31.3 M instructions to import this module in `cfai chat hi` (callgrind,
docs/performance.md "One-shot CLI round 9"). Every name a class body refers to is defined above it; the types,
and so the validation, are the same objects either way (the TypedDicts now also know their `NotRequired` keys,
which Python 3.11 cannot see in text; tests/core/test_request_validation.py checks both).
"""

import json
from typing import Annotated, Any, Literal, NotRequired, Self, TypedDict

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from cfai_cli.core.openai.base import WireModel

# ---- request -------------------------------------------------------------------------------------


class TextPart(WireModel):
    type: Literal["text"]
    text: str


class ImageURL(WireModel):
    url: str
    detail: str | None = None


class ImagePart(WireModel):
    type: Literal["image_url"]
    image_url: ImageURL | str

    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


class RefusalPart(WireModel):
    type: Literal["refusal"]
    refusal: str


class AudioPart(WireModel):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(WireModel):
    type: Literal["file"]
    file: dict[str, Any]


ContentPart = Annotated[
    TextPart | ImagePart | RefusalPart | AudioPart | FilePart, Field(discriminator="type")
]


class FunctionCall(WireModel):
    name: str
    arguments: str | dict[str, Any] = "{}"


class CustomCall(WireModel):
    name: str
    input: str = ""


class FunctionToolCall(WireModel):
    """A function call in an assistant message of the history."""

    id: str = ""
    type: str = "function"
    function: FunctionCall

    def name(self) -> str:
        return self.function.name

    def arguments_text(self) -> str:
        args = self.function.arguments
        return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


class CustomToolCall(WireModel):
    """A custom tool's call in an assistant message of the history: free-form input, not JSON arguments."""

    id: str = ""
    type: Literal["custom"]
    custom: CustomCall

    def name(self) -> str:
        return self.custom.name

    def arguments_text(self) -> str:
        return self.custom.input


def _call_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom-call" if kind == "custom" else "function-call"


ToolCall = Annotated[
    Annotated[FunctionToolCall, Tag("function-call")] | Annotated[CustomToolCall, Tag("custom-call")],
    Discriminator(_call_kind),
]


class Message(WireModel):
    # `role` comes first: the validators of later fields read it, so their errors name the field itself.
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = Field(default=None, validate_default=True)
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(default=None, validate_default=True)
    reasoning_content: str | None = None

    @field_validator("content")
    @classmethod
    def _content_needed(cls, value: Any, info: ValidationInfo) -> Any:
        role = info.data.get("role")
        if value is None and role in ("system", "developer", "user"):
            raise ValueError(f"messages with role '{role}' need 'content'")
        return value

    @field_validator("tool_call_id")
    @classmethod
    def _tool_call_id_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value and info.data.get("role") == "tool":
            raise ValueError("messages with role 'tool' need a 'tool_call_id'")
        return value

    def text(self) -> str:
        """The message's text with non-text parts left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text if isinstance(p, TextPart) else "" for p in self.content)


class FunctionDefinition(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(WireModel):
    type: Literal["function"]
    function: FunctionDefinition


class CustomToolDefinition(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomTool(WireModel):
    """A tool that takes free-form text (optionally shaped by a grammar) instead of JSON arguments."""

    type: Literal["custom"]
    custom: CustomToolDefinition


class OtherTool(WireModel):
    """Any other tool type: hosted tools (dropped) and namespaces, checked in core.translate.toolset."""

    type: str


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    # A tag with a dash: param_path() leaves such union labels out of error paths.
    return kind if kind in ("function", "custom") else "other-tool"


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[CustomTool, Tag("custom")]
    | Annotated[OtherTool, Tag("other-tool")],
    Discriminator(_tool_kind),
]


class NamedToolChoice(WireModel):
    type: Literal["function"]
    function: dict[str, str]

    @field_validator("function")
    @classmethod
    def _has_name(cls, value: dict[str, str]) -> dict[str, str]:
        if not value.get("name"):
            raise ValueError("tool_choice.function needs a 'name'")
        return value


class NamedCustomToolChoice(WireModel):
    type: Literal["custom"]
    custom: dict[str, str]

    @field_validator("custom")
    @classmethod
    def _has_name(cls, value: dict[str, str]) -> dict[str, str]:
        if not value.get("name"):
            raise ValueError("tool_choice.custom needs a 'name'")
        return value


class AllowedToolsChoice(WireModel):
    type: Literal["allowed_tools"]
    allowed_tools: dict[str, Any]


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[NamedToolChoice | NamedCustomToolChoice | AllowedToolsChoice, Field(discriminator="type")]
)


class JSONSchemaFormat(WireModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(WireModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> Self:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class StreamOptions(WireModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(WireModel):
    model: str
    messages: Annotated[list[Message], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=16)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    prompt_cache_key: str | None = None  # groups requests for prefix caching (core.affinity)

    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [s for s in stops if s]

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def has_images(self) -> bool:
        """Whether any message carries an image part: the model chosen must take images (core.catalog)."""
        return any(isinstance(part, ImagePart) for m in self.messages if isinstance(m.content, list)
                   for part in m.content)


# ---- response ------------------------------------------------------------------------------------


class FunctionCallOut(TypedDict):
    name: str
    arguments: str


class ToolCallOut(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCallOut


class CustomCallOut(TypedDict):
    name: str
    input: str


class CustomToolCallOut(TypedDict):
    id: str
    type: Literal["custom"]
    custom: CustomCallOut


AnyToolCallOut = ToolCallOut | CustomToolCallOut


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: NotRequired[list[AnyToolCallOut]]
    reasoning_content: NotRequired[str]


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class Choice(TypedDict):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: FinishReason


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[dict[str, int]]
    completion_tokens_details: NotRequired[dict[str, int]]


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ToolCallDelta(TypedDict):
    index: int
    id: NotRequired[str]
    # "custom" deltas are what OpenAI streams for custom tools, though its spec's chunk schema lacks them
    # (openai/openai-openapi#576); cfai sends such a call whole, in one delta.
    type: NotRequired[Literal["function", "custom"]]
    function: NotRequired[dict[str, str]]
    custom: NotRequired[dict[str, str]]


class Delta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    reasoning_content: str
    tool_calls: list[ToolCallDelta]


class ChunkChoice(TypedDict):
    index: int
    delta: Delta
    logprobs: None
    finish_reason: FinishReason | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[Usage | None]
