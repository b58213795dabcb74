"""Tests for tests/openai_schema.py: the OpenAI schema checks must accept correct bodies and reject broken ones.

Also keeps the committed tests/schemas/openai-subset.json honest: it must be well-formed Draft 2020-12 and,
when the full spec is checked out next to the repo, byte-identical to a fresh extraction.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.openai_schema import SUBSET_PATH, errors, schema_names, validate, validate_sse_chat_stream

REPO_ROOT = Path(__file__).resolve().parent.parent
FULL_SPEC = REPO_ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"
EXTRACTOR = REPO_ROOT / "scripts" / "extract_openai_schemas.py"

USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


def chat_completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "@cf/meta/llama-3.1-8b-instruct",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Four.", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }],
        "usage": USAGE,
    }


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "@cf/meta/llama-3.1-8b-instruct",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None}],
        "usage": None,
    }


def usage_chunk() -> dict[str, Any]:
    return {**chunk(), "choices": [], "usage": USAGE}


def sse(*payloads: dict[str, Any] | str) -> str:
    return "".join(f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads)


# ---- JSON bodies ------------------------------------------------------------------------------------------


def test_a_correct_chat_completion_validates() -> None:
    validate(chat_completion(), "CreateChatCompletionResponse")


def test_a_chunk_with_null_finish_reason_and_usage_validates() -> None:
    # finish_reason and usage are `nullable: true` in the spec; plain Draft 2020-12 would reject null.
    validate(chunk({"role": "assistant", "content": ""}), "CreateChatCompletionStreamResponse")


def test_a_final_usage_chunk_with_no_choices_validates() -> None:
    validate(usage_chunk(), "CreateChatCompletionStreamResponse")


def test_a_chat_message_without_refusal_fails_and_names_the_path() -> None:
    body = chat_completion()
    del body["choices"][0]["message"]["refusal"]
    problems = errors(body, "CreateChatCompletionResponse")
    assert problems == ["$.choices[0].message: 'refusal' is a required property"]
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.message: 'refusal' is a required property"):
        validate(body, "CreateChatCompletionResponse")


def test_a_wrong_finish_reason_fails() -> None:
    body = chat_completion()
    body["choices"][0]["finish_reason"] = "done"
    assert any("$.choices[0].finish_reason" in problem for problem in errors(body, "CreateChatCompletionResponse"))


def test_an_error_body_with_all_four_keys_validates() -> None:
    body = {"error": {"message": "No such model", "type": "invalid_request_error", "param": None, "code": None}}
    validate(body, "ErrorResponse")


@pytest.mark.parametrize("missing", ["param", "code"])
def test_an_error_body_missing_a_nullable_key_fails(missing: str) -> None:
    error = {"message": "No such model", "type": "invalid_request_error", "param": None, "code": None}
    del error[missing]
    with pytest.raises(AssertionError, match=f"'{missing}' is a required property"):
        validate({"error": error}, "ErrorResponse")


def test_a_model_list_validates() -> None:
    models = {
        "object": "list",
        "data": [{"id": "@cf/meta/llama-3.1-8b-instruct", "object": "model", "created": 0, "owned_by": "meta"}],
    }
    validate(models, "ListModelsResponse")


def test_an_unknown_schema_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"not in openai-subset\.json"):
        validate({}, "NoSuchSchema")


# ---- SSE chat streams ------------------------------------------------------------------------------------


def test_a_correct_stream_returns_its_chunks() -> None:
    body = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({}, "stop"),
               usage_chunk(), "[DONE]")
    chunks = validate_sse_chat_stream(body.encode())
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:2]] == ["", "Hi"]
    assert chunks[-1]["usage"] == USAGE and len(chunks) == 4


def test_sse_comments_and_crlf_line_ends_are_accepted() -> None:
    body = ": keep-alive\r\n\r\n" + sse(chunk({"content": "Hi"}), "[DONE]").replace("\n", "\r\n")
    assert len(validate_sse_chat_stream(body)) == 1


def test_a_stream_without_done_fails() -> None:
    with pytest.raises(AssertionError, match=r"must end with `data: \[DONE\]`"):
        validate_sse_chat_stream(sse(chunk({"content": "Hi"}), chunk({}, "stop")))


@pytest.mark.parametrize("ending", ["data: [DONE]\n", "data: [DONE]"])
def test_an_unterminated_done_fails(ending: str) -> None:
    with pytest.raises(AssertionError, match="SSE body"):
        validate_sse_chat_stream(sse(chunk({"content": "Hi"})) + ending)


def test_events_after_done_fail() -> None:
    with pytest.raises(AssertionError, match="followed by more events"):
        validate_sse_chat_stream(sse(chunk({"content": "Hi"}), "[DONE]", chunk({}), "[DONE]"))


def test_an_invalid_chunk_in_a_stream_fails_with_its_position() -> None:
    bad = chunk({"content": "Hi"})
    del bad["created"]
    with pytest.raises(AssertionError, match=r"event 1: \$: 'created' is a required property"):
        validate_sse_chat_stream(sse(chunk({"role": "assistant"}), bad, "[DONE]"))


def test_a_non_json_payload_fails() -> None:
    with pytest.raises(AssertionError, match="event 0: not JSON"):
        validate_sse_chat_stream(sse("{not json", "[DONE]"))


# ---- the committed subset ---------------------------------------------------------------------------------


def test_the_subset_is_well_formed_draft_2020_12_without_nullable() -> None:
    text = SUBSET_PATH.read_text(encoding="utf-8")
    subset = json.loads(text)
    assert subset["source"]["repository"] == "openai/openai-openapi"
    assert '"nullable"' not in text  # every OpenAPI 3.0 `nullable` was rewritten to anyOf [..., null]
    for name, schema in subset["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:  # pragma: no cover - only reached on a broken subset
            raise AssertionError(f"{name}: {exc}") from exc


def test_the_subset_holds_the_schemas_cfai_serves() -> None:
    served = {"CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse",
              "Response", "ResponseStreamEvent", "CreateEmbeddingResponse", "ImagesResponse",
              "ListModelsResponse", "Model", "ErrorResponse", "Error"}
    assert served <= set(schema_names())


@pytest.mark.skipif(not FULL_SPEC.is_file(), reason=f"full OpenAI spec not checked out at {FULL_SPEC}")
def test_the_committed_subset_matches_a_fresh_extraction(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="the extractor needs PyYAML")
    fresh = tmp_path / "openai-subset.json"
    subprocess.run([sys.executable, str(EXTRACTOR), str(FULL_SPEC), "--output", str(fresh)],
                   check=True, capture_output=True, text=True)
    assert fresh.read_bytes() == SUBSET_PATH.read_bytes(), (
        "tests/schemas/openai-subset.json is stale; run scripts/extract_openai_schemas.py"
    )
