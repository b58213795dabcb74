"""Chat completion chunks -> Responses API stream events, and the final Response they add up to.

Pure: standard library, cfai_cli.errors and cfai_cli.core. `ResponseBuilder` is the event state machine:
`start()`, then `feed(chunk)` per chat chunk, then `finish()` or `fail(error)`. A whole (non-streamed)
answer is built by replaying it as chunks through the same machine, so both paths emit the same objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from cfai_cli.core.openai.chat import ChatCompletion, ChatCompletionChunk, FinishReason, Usage
from cfai_cli.core.openai.responses import Event, Item, ResponseObject, ResponseUsage
from cfai_cli.core.translate.chat_stream import completion_to_chunks
from cfai_cli.core.translate.toolset import ToolSet, custom_input
from cfai_cli.errors import CfaiError, InvalidRequest, RateLimited

NewId = Callable[[str], str]


def response_usage(usage: Usage) -> ResponseUsage:
    details = usage.get("prompt_tokens_details") or {}
    out_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": usage["prompt_tokens"],
        # Spec 2.3.0 requires both cache counters; Workers AI never writes a cache entry we can see.
        "input_tokens_details": {"cached_tokens": details.get("cached_tokens", 0), "cache_write_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": out_details.get("reasoning_tokens", 0)},
        "total_tokens": usage["total_tokens"],
    }


def error_code(error: CfaiError) -> str:
    """The ResponseErrorCode (a closed enum in the spec) nearest to a cfai error."""
    if isinstance(error, RateLimited):
        return "rate_limit_exceeded"
    if isinstance(error, InvalidRequest):
        return "invalid_prompt"
    return "server_error"


class ResponseBuilder:
    """One response's event sequence; `response` is the Response as it stands (final after finish/fail)."""

    def __init__(self, shell: ResponseObject, *, new_id: NewId, summary: bool = False,
                 tools: ToolSet | None = None) -> None:
        self.response: ResponseObject = copy.deepcopy(shell)
        self._new_id = new_id
        self._summary = summary
        self._toolset = tools or ToolSet()  # maps the flat names the model called back to the client's tools
        self._custom: dict[int, str] = {}  # output index of an open custom_tool_call -> its arguments so far
        self._seq = 0
        self._text: int | None = None  # output index of the open message item
        self._reasoning: int | None = None  # output index of the open reasoning item
        self._tools: dict[int, int] = {}  # chat tool-call index -> output index of its open function_call
        self._finish: FinishReason | None = None
        self.ended = False

    @property
    def sequence_number(self) -> int:
        """The number the next event will carry."""
        return self._seq

    def _event(self, kind: str, **fields: Any) -> Event:
        event: Event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self) -> ResponseObject:
        return copy.deepcopy(self.response)

    @property
    def _output(self) -> list[Item]:
        return self.response["output"]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> list[Event]:
        return [self._event("response.created", response=self._snapshot()),
                self._event("response.in_progress", response=self._snapshot())]

    def feed(self, chunk: ChatCompletionChunk) -> list[Event]:
        events: list[Event] = []
        if chunk.get("usage"):
            usage = chunk["usage"]
            assert usage is not None
            self.response["usage"] = response_usage(usage)
        for choice in chunk["choices"]:
            if choice["index"] != 0:
                continue  # the Responses API has one answer; `n` is never sent
            delta = choice["delta"]
            if delta.get("reasoning_content"):
                events += self._reasoning_delta(delta["reasoning_content"])
            if delta.get("content"):
                events += self._text_delta(delta["content"])
            for call in delta.get("tool_calls", []):
                events += self._tool_delta(call["index"], call.get("id"), call.get("function") or {})
            if choice["finish_reason"] is not None:
                self._finish = choice["finish_reason"]
        return events

    def finish(self, *, completed_at: int) -> list[Event]:
        """Close every open item and end with `response.completed` (or `.incomplete` at a limit)."""
        incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(self._finish or "")
        item_status = "incomplete" if incomplete else "completed"
        events = self._close_reasoning() + self._close_text(item_status)
        for output_index in sorted(self._tools.values()):
            events += self._close_tool(output_index)
        self._tools.clear()
        self.response["output_text"] = "".join(
            part["text"] for item in self._output if item["type"] == "message"
            for part in item["content"] if part["type"] == "output_text")
        self.ended = True
        if incomplete:
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": incomplete}
            return [*events, self._event("response.incomplete", response=self._snapshot())]
        self.response["status"] = "completed"
        self.response["completed_at"] = completed_at
        return [*events, self._event("response.completed", response=self._snapshot())]

    def fail(self, error: CfaiError) -> list[Event]:
        """An `error` event, then `response.failed` carrying what was produced so far."""
        for item in self._output:
            if item.get("status") == "in_progress":
                item["status"] = "incomplete"
        self.response["status"] = "failed"
        self.response["error"] = {"code": error_code(error), "message": error.message}
        self.ended = True
        return [self._event("error", code=error.code, message=error.message, param=error.param),
                self._event("response.failed", response=self._snapshot())]

    # -- items -------------------------------------------------------------------------------------

    def _add(self, item: Item) -> tuple[int, Event]:
        self._output.append(item)
        index = len(self._output) - 1
        return index, self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item))

    def _done(self, index: int, status: str = "completed") -> Event:
        item = self._output[index]
        item["status"] = status
        return self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def _reasoning_delta(self, text: str) -> list[Event]:
        events = self._close_text("completed")
        if self._reasoning is None:
            item: Item = {"type": "reasoning", "id": self._new_id("rs"), "summary": [],
                          "content": [{"type": "reasoning_text", "text": ""}], "status": "in_progress"}
            self._reasoning, added = self._add(item)
            events.append(added)
            if self._summary:
                item["summary"] = [{"type": "summary_text", "text": ""}]
                events.append(self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                          output_index=self._reasoning, summary_index=0,
                                          part={"type": "summary_text", "text": ""}))
        item = self._output[self._reasoning]
        item["content"][0]["text"] += text
        events.append(self._event("response.reasoning_text.delta", item_id=item["id"], output_index=self._reasoning,
                                  content_index=0, delta=text))
        if self._summary:
            # Workers AI gives the reasoning itself, not a summary of it: the summary is that same text.
            item["summary"][0]["text"] += text
            events.append(self._event("response.reasoning_summary_text.delta", item_id=item["id"],
                                      output_index=self._reasoning, summary_index=0, delta=text))
        return events

    def _close_reasoning(self) -> list[Event]:
        if self._reasoning is None:
            return []
        index, self._reasoning = self._reasoning, None
        item = self._output[index]
        text = item["content"][0]["text"]
        events = [self._event("response.reasoning_text.done", item_id=item["id"], output_index=index,
                              content_index=0, text=text)]
        if self._summary:
            part = {"type": "summary_text", "text": text}
            events += [self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                                   summary_index=0, text=text),
                       self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                                   summary_index=0, part=part)]
        return [*events, self._done(index)]

    def _text_delta(self, text: str) -> list[Event]:
        events = self._close_reasoning()
        if self._text is None:
            item: Item = {"type": "message", "id": self._new_id("msg"), "role": "assistant", "status": "in_progress",
                          "content": []}
            self._text, added = self._add(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(copy.deepcopy(part))
            events += [added, self._event("response.content_part.added", item_id=item["id"], output_index=self._text,
                                          content_index=0, part=part)]
        item = self._output[self._text]
        item["content"][0]["text"] += text
        events.append(self._event("response.output_text.delta", item_id=item["id"], output_index=self._text,
                                  content_index=0, delta=text, logprobs=[]))
        return events

    def _close_text(self, status: str) -> list[Event]:
        if self._text is None:
            return []
        index, self._text = self._text, None
        item = self._output[index]
        part = item["content"][0]
        return [self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                            text=part["text"], logprobs=[]),
                self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                            part=copy.deepcopy(part)),
                self._done(index, status)]

    def _tool_delta(self, chat_index: int, call_id: str | None, function: dict[str, str]) -> list[Event]:
        events: list[Event] = []
        if chat_index not in self._tools:
            events = self._close_reasoning() + self._close_text("completed")
            origin = self._toolset.origin(function.get("name", ""))
            call_id = call_id or self._new_id("call")
            item: Item
            if origin.kind == "custom":
                # Its input is known once the function stand-in's JSON arguments are whole: sent at close.
                item = {"type": "custom_tool_call", "id": self._new_id("ctc"), "call_id": call_id,
                        "name": origin.name, "input": "", "status": "in_progress"}
            else:
                item = {"type": "function_call", "id": self._new_id("fc"), "call_id": call_id,
                        "name": origin.name, "arguments": "", "status": "in_progress"}
            if origin.namespace is not None:
                item["namespace"] = origin.namespace
            self._tools[chat_index], added = self._add(item)
            if origin.kind == "custom":
                self._custom[self._tools[chat_index]] = ""
            events.append(added)
        index = self._tools[chat_index]
        item = self._output[index]
        arguments = function.get("arguments") or ""
        if arguments and index in self._custom:
            self._custom[index] += arguments
        elif arguments:
            item["arguments"] += arguments
            events.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=index, delta=arguments))
        return events

    def _close_tool(self, index: int) -> list[Event]:
        item = self._output[index]
        if index in self._custom:
            item["input"] = custom_input(self._custom.pop(index))
            events = [self._event("response.custom_tool_call_input.delta", item_id=item["id"], output_index=index,
                                  delta=item["input"])] if item["input"] else []
            return [*events, self._event("response.custom_tool_call_input.done", item_id=item["id"],
                                         output_index=index, input=item["input"]), self._done(index)]
        return [self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            name=item["name"], arguments=item["arguments"]),
                self._done(index)]


def response_from_completion(completion: ChatCompletion, shell: ResponseObject, *, new_id: NewId,
                             completed_at: int, summary: bool = False, tools: ToolSet | None = None) -> ResponseObject:
    """The Response for a whole chat answer: replayed through the stream machine so both paths agree."""
    builder = ResponseBuilder(shell, new_id=new_id, summary=summary, tools=tools)
    builder.start()
    for chunk in completion_to_chunks(completion, include_usage=True):
        builder.feed(chunk)
    builder.finish(completed_at=completed_at)
    return builder.response
