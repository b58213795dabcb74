"""JSON nested past Python's recursion limit, from a client, a model or the upstream, is refused as bad JSON:
`json.loads` raises RecursionError there, which passed every `except ValueError` and became a 500."""

from __future__ import annotations

import pytest

from cfai_cli.core import jsonfast
from cfai_cli.core.translate.anthropic_out import tool_input
from cfai_cli.core.translate.chat import legacy_tool_history
from cfai_cli.core.translate.forced import calls_from_retry
from cfai_cli.core.translate.moderations import parse_guard
from cfai_cli.core.translate.salvage import salvage_tool_calls
from cfai_cli.core.translate.toolset import custom_input
from cfai_cli.core.workers.envelope import decode_json_result
from cfai_cli.core.workers.vector_cut import counted_vectors, decode_vectors_result
from cfai_cli.errors import UpstreamError

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize("text", [DEEP, DEEP_OBJECT])
def test_the_decoders_refuse_it_as_a_value_error(text: str) -> None:
    for decode in (jsonfast.loads_text, jsonfast.loads, lambda t: jsonfast.loads(t.encode())):
        with pytest.raises(ValueError, match="nested too deeply"):
            decode(text)
    assert jsonfast.is_json(text.encode()) is False
    assert counted_vectors(("[" + text + "]").encode()) is None


def test_an_upstream_answer_nested_too_deeply_is_an_upstream_error() -> None:
    body = ('{"result":{"data":' + DEEP + '},"success":true}').encode()
    with pytest.raises(UpstreamError, match="not JSON"):
        decode_json_result(200, "application/json", body, {})
    for floats in (True, False):
        with pytest.raises(UpstreamError, match="not JSON"):
            decode_vectors_result(200, "application/json", body, {}, floats=floats)


def test_tool_arguments_and_model_text_nested_too_deeply_are_kept_as_text_or_left() -> None:
    assert tool_input(DEEP_OBJECT) == {}
    assert custom_input(DEEP) == DEEP
    assert salvage_tool_calls(DEEP_OBJECT, ["f"]) == []
    assert calls_from_retry(DEEP_OBJECT, ["f"]) == []
    history = legacy_tool_history({"messages": [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": DEEP}}]}]})
    assert history is not None and DEEP[:50] in history["messages"][0]["content"]
    with pytest.raises(UpstreamError, match="did not answer with a safety verdict"):  # a guard's bad answer
        parse_guard({"response": DEEP_OBJECT}, model="@cf/meta/llama-guard-3-8b")
