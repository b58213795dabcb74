"""Check bodies cfai emits against the official OpenAI schemas (a test helper, not a test module).

The schemas come from the committed tests/schemas/openai-subset.json, which scripts/extract_openai_schemas.py
extracts from the OpenAI OpenAPI spec with `nullable` already rewritten for JSON Schema Draft 2020-12.
Use `validate` / `errors` for JSON bodies and `validate_sse_chat_stream` for streamed chat completions.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SUBSET_PATH = Path(__file__).resolve().parent / "schemas" / "openai-subset.json"
# Any absolute URI works; the spec's own refs are fragment-only ("#/components/schemas/X") and resolve
# inside this one document.
_SUBSET_URI = "https://cfai.invalid/openai-subset.json"
_MAX_MESSAGE = 300
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@functools.cache
def _subset() -> tuple[Registry[Any], Mapping[str, Any]]:
    document = json.loads(SUBSET_PATH.read_text(encoding="utf-8"))
    # The document has no $schema, so say explicitly which dialect its schemas are written in.
    registry: Registry[Any] = Registry().with_resource(_SUBSET_URI, DRAFT202012.create_resource(document))
    return registry, document["components"]["schemas"]


def schema_names() -> list[str]:
    """Every schema name the committed subset holds."""
    return sorted(_subset()[1])


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    registry, schemas = _subset()
    if schema_name not in schemas:
        raise ValueError(
            f"{schema_name!r} is not in {SUBSET_PATH.name}; add it to ROOTS in scripts/extract_openai_schemas.py "
            "and regenerate"
        )
    return Draft202012Validator({"$ref": f"{_SUBSET_URI}#/components/schemas/{schema_name}"}, registry=registry)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _closest(error: ValidationError) -> ValidationError:
    """The most telling error among the alternatives of a failed anyOf/oneOf."""
    tag = "type"
    if isinstance(error.schema, Mapping):
        tag = error.schema.get("discriminator", {}).get("propertyName", tag)
    by_branch: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    # A branch whose tag (`type`: "response.completed", "function", ...) disagrees with the instance is
    # a different kind of object, not a near miss; without this, best_match happily reports that a
    # `response.completed` event lacks `delta`.
    same_kind = [sub for subs in by_branch.values() if not any(list(s.path) == [tag] for s in subs) for sub in subs]
    return best_match(same_kind or error.context) or error


def _describe(error: ValidationError) -> str:
    if error.context:
        # "X is not valid under any of the given schemas" repeats the whole instance and says nothing
        # about why; the most relevant error of the closest alternative does.
        closest = _closest(error)
        return f"{error.json_path}: no {error.validator} alternative matches; closest: {_describe(closest)}"
    return f"{error.json_path}: {_shorten(error.message)}"


def errors(instance: object, schema_name: str) -> list[str]:
    """Readable "<json path>: <problem>" strings, one per violation; empty when `instance` is valid."""
    found = _validator(schema_name).iter_errors(instance)
    return [_describe(error) for error in sorted(found, key=lambda e: (e.json_path, e.message))]


def validate(instance: object, schema_name: str) -> None:
    """Raise AssertionError listing every failing path unless `instance` matches the OpenAI schema."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    problems = errors(instance, schema_name)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise AssertionError(f"not a valid OpenAI {schema_name} ({len(problems)} problem(s)):\n{listing}")


def _sse_data(text: str) -> list[str]:
    """The `data` of each dispatched SSE event, parsed per the WHATWG event-stream rules.

    Deliberately independent of cfai's own SSE code so a shared bug cannot hide. Stricter than a browser
    in two ways a proxy should never need: named events (the OpenAI SDKs would not treat them as chat
    chunks) and a final event without its terminating blank line (conforming readers drop it) both fail.
    """
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    if lines[-1] == "":
        lines.pop()  # the text after the final line break is not a line
    else:
        raise AssertionError(f"SSE body does not end with a line break; last line: {lines[-1][:80]!r}")
    payloads: list[str] = []
    data: list[str] = []
    for number, line in enumerate(lines, 1):
        if line == "":
            if data:
                payloads.append("\n".join(data))
                data = []
            continue
        if line.startswith(":"):
            continue  # comment, e.g. a keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            raise AssertionError(f"SSE line {number}: chat streams carry no named events, got {line!r}")
    if data:
        raise AssertionError(f"SSE body ends inside an event (no blank line after it): {data[-1][:80]!r}")
    return payloads


def validate_sse_chat_stream(raw: bytes | str) -> list[dict[str, Any]]:
    """Check a streamed chat completion body and return its parsed chunks (without the [DONE] marker).

    Every `data:` payload before the final `data: [DONE]` must be a JSON CreateChatCompletionStreamResponse;
    the stream must end with exactly one `[DONE]` event, after which nothing else is sent.
    """
    __tracebackhide__ = True
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    payloads = _sse_data(text)
    if not payloads or payloads[-1] != "[DONE]":
        last = payloads[-1][:80] if payloads else "nothing"
        raise AssertionError(f"SSE chat stream must end with `data: [DONE]`; its last event is {last!r}")
    if "[DONE]" in payloads[:-1]:
        after = payloads[payloads.index("[DONE]") + 1]
        raise AssertionError(f"`data: [DONE]` is followed by more events: {after[:80]!r}")
    chunks: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, payload in enumerate(payloads[:-1]):
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError as exc:
            problems.append(f"event {index}: not JSON ({exc}): {payload[:80]!r}")
            continue
        problems.extend(f"event {index}: {problem}" for problem in errors(chunk, "CreateChatCompletionStreamResponse"))
        chunks.append(chunk)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise AssertionError(f"invalid OpenAI chat stream ({len(problems)} problem(s)):\n{listing}")
    return chunks


_TERMINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def _sse_named(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each dispatched SSE event, WHATWG rules, independent of cfai's decoder."""
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    if lines[-1] != "":
        raise AssertionError(f"SSE body does not end with a line break; last line: {lines[-1][:80]!r}")
    lines.pop()
    out: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                out.append((name, "\n".join(data)))
            name, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data:
        raise AssertionError(f"SSE body ends inside an event (no blank line after it): {data[-1][:80]!r}")
    return out


def validate_response_events(events: list[dict[str, Any]]) -> None:
    """Every event a ResponseStreamEvent, numbered 0, 1, 2…, starting with response.created and ending with
    exactly one terminal event whose `response` is a valid Response."""
    __tracebackhide__ = True
    problems: list[str] = []
    for index, event in enumerate(events):
        problems.extend(f"event {index} ({event.get('type')}): {p}" for p in errors(event, "ResponseStreamEvent"))
        if event.get("sequence_number") != index:
            problems.append(f"event {index}: sequence_number is {event.get('sequence_number')!r}")
    if not events or events[0].get("type") != "response.created":
        problems.append("the first event must be response.created")
    terminal = [i for i, e in enumerate(events) if e.get("type") in _TERMINAL_RESPONSE_EVENTS]
    if terminal != [len(events) - 1]:
        problems.append(f"exactly one terminal event, last; got them at {terminal} of {len(events)}")
    for event in events:
        if "response" in event:
            problems.extend(f"{event['type']}.response: {p}" for p in errors(event["response"], "Response"))
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise AssertionError(f"invalid Responses stream ({len(problems)} problem(s)):\n{listing}")


def validate_sse_responses_stream(raw: bytes | str) -> list[dict[str, Any]]:
    """Check a streamed Responses body (`event: <type>` + `data:` per event, no `[DONE]`); return its events."""
    __tracebackhide__ = True
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    events: list[dict[str, Any]] = []
    for index, (name, data) in enumerate(_sse_named(text)):
        if data == "[DONE]":
            raise AssertionError("Responses streams carry no `data: [DONE]`")
        event = json.loads(data)
        if name != event.get("type"):
            raise AssertionError(f"event {index}: `event: {name}` does not match its data's type {event.get('type')!r}")
        events.append(event)
    validate_response_events(events)
    return events
