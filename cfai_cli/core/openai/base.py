"""Shared pieces of the OpenAI wire models: the lenient base model and request parsing.

Pure: pydantic, the standard library and cfai_cli.errors. Inbound bodies are validated strictly on
types (OpenAI rejects "0.5" for a number too) but unknown fields are kept, not refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cfai_cli.core import jsonfast
from cfai_cli.errors import InvalidRequest


class WireModel(BaseModel):
    """Base for inbound OpenAI objects: strict types, unknown fields allowed and ignored."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True, defer_build=True)


M = TypeVar("M", bound=BaseModel)


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "bytes", "none", "dict", "list", "any"})


def _is_branch_label(part: str) -> bool:
    """pydantic's names for union members ("str", "list[str]", "function-after[...]", "ImageURL")."""
    return "[" in part or "-" in part or part[:1].isupper() or part in _TYPE_LABELS


def param_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ('messages', 0, 'content') -> OpenAI's 'messages[0].content'."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_branch_label(part):
            continue
        elif i + 1 < len(loc) and loc[i + 1] == part:
            # A discriminated-union tag ("text", "image_url") precedes the field of the same name.
            continue
        elif not out:
            out = part
        else:
            out += f".{part}"
    return out


# The error type of a callable Discriminator's failure (core.anthropic.models): named like a tag error.
TYPE_TAG_ERROR = "invalid_type_tag"


def _error_path(error: Mapping[str, Any]) -> str:
    path = param_path(tuple(error["loc"]))
    if error["type"] in ("union_tag_invalid", "union_tag_not_found", TYPE_TAG_ERROR):
        discriminator = str((error.get("ctx") or {}).get("discriminator", "type")).strip("'")
        path = f"{path}.{discriminator}" if path else discriminator
    return path


def _most_relevant(errors: list[Any]) -> Any:
    """Of a union's failed branches, the deepest one; on a tie, a broken value beats a wrong type."""
    def rank(item: tuple[int, Any]) -> tuple[int, int, int]:
        index, error = item
        path = _error_path(error)
        wrong_type = str(error["type"]).endswith("_type")
        return (-(path.count(".") + path.count("[")), int(wrong_type), index)

    return min(enumerate(errors), key=rank)[1]


_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16 either way round; UTF-32 LE starts with FF FE too
_NOT_UTF8 = "JSON on the wire must be UTF-8 (RFC 8259), but {}. Send the body encoded as UTF-8."


def _utf8_only(raw: bytes) -> bytes:
    """The body with a leading UTF-8 BOM dropped, or a 400 if it is UTF-16/32 (with or without a BOM).

    A UTF-8 BOM is accepted (RFC 8259 lets parsers ignore it; editors on Windows add it to saved files,
    and `curl -d @file.json` sends it as is). Wider encodings are refused, never decoded: `json.loads(bytes)`
    (the fallback when orjson refuses a body) would guess UTF-16/32 from the first bytes, and a guessed
    encoding is how a body read one way by a check and another way by the upstream slips past the check.
    """
    if raw.startswith(_UTF8_BOM):
        return raw[3:]
    if raw.startswith(_WIDE_BOMS) or raw.startswith(b"\x00\x00\xfe\xff"):
        raise InvalidRequest(_NOT_UTF8.format("this body starts with a UTF-16/32 byte order mark"),
                             code="invalid_json")
    if b"\x00" in raw:  # never in UTF-8 JSON (a NUL inside a string must be escaped): a wide encoding
        raise InvalidRequest(_NOT_UTF8.format("this body holds NUL bytes (UTF-16/32 text does, UTF-8 JSON never)"),
                             code="invalid_json")
    return raw


def parse_body(raw: bytes | str) -> dict[str, Any]:
    """Decode a JSON request body, insisting on UTF-8 and a JSON object."""
    if not isinstance(raw, str):
        raw = _utf8_only(bytes(raw))
    try:
        data = jsonfast.loads(raw)
    except UnicodeDecodeError:
        raise InvalidRequest(_NOT_UTF8.format("this body is not valid UTF-8"),
                             code="invalid_json") from None
    except ValueError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}.", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, not {type(data).__name__ if data is not None else 'null'}.",
            code="invalid_json",
        )
    return data


def validate_request(model: type[M], data: dict[str, Any]) -> M:
    """Validate a decoded body into `model`, turning the most relevant problem into a 400 with `param` set."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = _most_relevant(exc.errors(include_url=False))
        path = _error_path(first)
        kind = first["type"]
        if kind == "union_tag_not_found" or (kind == "value_error" and first.get("input") in (None, "")):
            kind = "missing"  # a check failed on a value that is not there: a required field was left out
        if kind == "missing":
            message = f"Missing required parameter: '{path}'."
        else:
            got = first.get("input")
            shown = json.dumps(got, default=str)[:80] if not isinstance(got, dict) else "an object"
            message = f"Invalid value for '{path}': {first['msg'].rstrip('.')} (got {shown})."
        raise InvalidRequest(message, param=path or None, code="invalid_value" if kind != "missing" else
                             "missing_required_parameter") from None
