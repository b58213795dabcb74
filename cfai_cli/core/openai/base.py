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

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


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


def _error_path(error: Mapping[str, Any]) -> str:
    path = param_path(tuple(error["loc"]))
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
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


def parse_body(raw: bytes | str) -> dict[str, Any]:
    """Decode a JSON request body, insisting on a JSON object."""
    try:
        data = jsonfast.loads(raw)
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
