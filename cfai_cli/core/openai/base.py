"""Shared pieces of the OpenAI wire models: the lenient base model and request parsing.

Pure: pydantic, the standard library and cfai_cli.errors. Inbound bodies are validated strictly on
types (OpenAI rejects "0.5" for a number too) but unknown fields are kept, not refused.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cfai_cli.errors import InvalidRequest


class WireModel(BaseModel):
    """Base for inbound OpenAI objects: strict types, unknown fields allowed and ignored."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


def param_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ('messages', 0, 'content') -> OpenAI's 'messages[0].content'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        elif "[" in part or "-" in part:
            # Union branch tags ("function-after[...]", "list[...]") are pydantic internals.
            continue
        else:
            out += f".{part}"
    return out


def parse_body(raw: bytes | str) -> dict[str, Any]:
    """Decode a JSON request body, insisting on a JSON object."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.", code="invalid_json") from None
    except ValueError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}.", code="invalid_json"
        ) from None
    except RecursionError:
        raise InvalidRequest("The JSON body is nested too deeply.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, not {type(data).__name__ if data is not None else 'null'}.",
            code="invalid_json",
        )
    return data


def validate_request(model: type[M], data: dict[str, Any]) -> M:
    """Validate a decoded body into `model`, turning the first problem into a 400 with `param` set."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = param_path(tuple(first["loc"]))
        kind = first["type"]
        if kind == "missing":
            message = f"Missing required parameter: '{path}'."
        else:
            got = first.get("input")
            shown = json.dumps(got, default=str)[:80] if not isinstance(got, dict) else "an object"
            message = f"Invalid value for '{path}': {first['msg'].rstrip('.')} (got {shown})."
        raise InvalidRequest(message, param=path or None, code="invalid_value" if kind != "missing" else
                             "missing_required_parameter") from None
