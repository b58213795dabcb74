"""Anthropic Messages API wire models: the bodies of POST /v1/messages and /v1/messages/count_tokens.

Pure: pydantic, the standard library and core.openai.base (the lenient model and the error machinery, so a
bad Anthropic body is reported exactly like a bad OpenAI one: a 400 whose `param` is the JSON path).
Unknown fields (cache_control, citations, container, mcp_servers, ...) are accepted and ignored; block
types cfai cannot serve are refused or dropped by core.translate.anthropic_in, which knows why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from cfai_cli.core.openai.base import TYPE_TAG_ERROR, WireModel


def _kind(known: frozenset[str], other: str) -> Any:
    """A discriminator that sends known `type`s to their model and anything else to `other`.

    Tags carry a dash (`text-block`): param_path() leaves such union labels out of error paths, so a bad
    image is reported as `messages[0].content[1].source`, not `...content[1].image.source`."""
    def pick(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return f"{kind}-block" if kind in known else other
    expected = ", ".join(f"'{k}'" for k in sorted(known))
    # A tag error that core.openai.base reports at `<path>.type`, in words a client understands.
    return Discriminator(pick, custom_error_type=TYPE_TAG_ERROR, custom_error_message=f"expected {expected}")


# ---- content blocks -------------------------------------------------------------------------------


class TextBlock(WireModel):
    type: Literal["text"]
    text: str


class Base64Source(WireModel):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(WireModel):
    type: Literal["url"]
    url: str


class FileSource(WireModel):
    """An image uploaded to Anthropic's Files API: nothing cfai can fetch (refused with a 400)."""

    type: Literal["file"]
    file_id: str


ImageSource = Annotated[
    Annotated[Base64Source, Tag("base64-block")] | Annotated[URLSource, Tag("url-block")]
    | Annotated[FileSource, Tag("file-block")],
    _kind(frozenset({"base64", "url", "file"}), "unknown-block"),
]


class ImageBlock(WireModel):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(WireModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class OtherBlock(WireModel):
    """Any other block: thinking, documents, server tool blocks, search results, future types."""

    type: str


_RESULT_KINDS = frozenset({"text", "image"})
ResultPart = Annotated[
    Annotated[TextBlock, Tag("text-block")] | Annotated[ImageBlock, Tag("image-block")]
    | Annotated[OtherBlock, Tag("other-block")],
    _kind(_RESULT_KINDS, "other-block"),
]


class ToolResultBlock(WireModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ResultPart] | None = None
    is_error: bool | None = None


_BLOCK_KINDS = frozenset({"text", "image", "tool_use", "tool_result"})
ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text-block")] | Annotated[ImageBlock, Tag("image-block")]
    | Annotated[ToolUseBlock, Tag("tool_use-block")] | Annotated[ToolResultBlock, Tag("tool_result-block")]
    | Annotated[OtherBlock, Tag("other-block")],
    _kind(_BLOCK_KINDS, "other-block"),
]


class MessageParam(WireModel):
    # "system" is not in Anthropic's schema, but Claude Code sends such turns: taken as system messages.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


# ---- tools ----------------------------------------------------------------------------------------


class CustomTool(WireModel):
    """A client tool (`type` absent or "custom"): the model calls it, the client runs it."""

    type: Literal["custom"] | None = None
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any]


class ServerTool(WireModel):
    """A tool Anthropic runs itself (web_search_20250305, bash_20250124, text_editor_..., code_execution_...)."""

    type: str
    name: str | None = None


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom-tool" if kind in (None, "custom") else "server-tool"


AnthropicTool = Annotated[
    Annotated[CustomTool, Tag("custom-tool")] | Annotated[ServerTool, Tag("server-tool")],
    Discriminator(_tool_kind),
]


class ToolChoiceAuto(WireModel):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(WireModel):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(WireModel):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(WireModel):
    type: Literal["none"]


ToolChoice = Annotated[
    Annotated[ToolChoiceAuto, Tag("auto-block")] | Annotated[ToolChoiceAny, Tag("any-block")]
    | Annotated[ToolChoiceTool, Tag("tool-block")] | Annotated[ToolChoiceNone, Tag("none-block")],
    _kind(frozenset({"auto", "any", "tool", "none"}), "unknown-block"),
]


class ThinkingConfig(WireModel):
    """`{"type": "enabled", "budget_tokens": N}`, `{"type": "disabled"}` or `{"type": "adaptive"}`."""

    type: str
    budget_tokens: int | None = None


# ---- requests -------------------------------------------------------------------------------------


class CountTokensRequest(WireModel):
    """The body of /v1/messages/count_tokens: what counts as input, without the generation settings."""

    model: str
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: Annotated[int, Field(ge=1)]
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    # Bounded: cfai scans the streamed text for each one itself (core.translate.anthropic_stream), holding back
    # what could still start one; Anthropic documents no limit, these are far past any real client's.
    stop_sequences: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=64)] | None = None
    stream: bool | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
