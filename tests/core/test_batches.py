"""The pure pieces of the Batch API: checking input lines (each error naming its line) and the objects emitted."""

from __future__ import annotations

import json

import pytest

from cfai_cli.core.openai.batches import LineChecker, LineError, batch_object, check_metadata, output_line
from cfai_cli.errors import InvalidRequest
from tests.openai_schema import validate

GOOD = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}


@pytest.mark.parametrize(("line", "words"), [
    (b"[1]", "line 4: each line must be a JSON object"),
    (b"{", "line 4: not valid JSON"),
    (json.dumps({**GOOD, "custom_id": ""}).encode(), "line 4: 'custom_id' must be a non-empty string"),
    (json.dumps({**GOOD, "custom_id": "x" * 513}).encode(), "longer than 512"),
    (json.dumps({**GOOD, "method": "PUT"}).encode(), "line 4: 'method'"),
    (json.dumps({**GOOD, "url": "/v1/moderations"}).encode(), "line 4: 'url' must be one of"),
    (json.dumps({**GOOD, "body": "x"}).encode(), "line 4: 'body' must be a JSON object"),
])
def test_bad_lines_name_their_number(line: bytes, words: str) -> None:
    checker = LineChecker(10)
    for i in range(3):
        checker.add(json.dumps({**GOOD, "custom_id": str(i)}).encode())
    with pytest.raises(LineError, match=words) as refused:
        checker.add(line)
    assert refused.value.line == 4


def test_blank_lines_count_and_custom_ids_are_unique() -> None:
    checker = LineChecker(2)
    assert checker.add(json.dumps(GOOD).encode()) == ("a", "/v1/embeddings", {"input": "x"})
    assert checker.add(b"  \n") is None
    with pytest.raises(LineError, match="line 3: 'custom_id' 'a' is used by an earlier line"):
        checker.add(json.dumps(GOOD).encode())
    assert checker.add(json.dumps({**GOOD, "custom_id": "b"}).encode()) is not None
    with pytest.raises(LineError, match="line 5: a batch file holds at most 2 requests"):
        checker.add(json.dumps({**GOOD, "custom_id": "c"}).encode())


def test_metadata_bounds() -> None:
    check_metadata({str(i): "v" for i in range(16)})
    for bad in ({str(i): "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}):
        with pytest.raises(InvalidRequest) as refused:
            check_metadata(bad)
        assert refused.value.param == "metadata"


def test_batch_object_leaves_out_what_has_no_value() -> None:
    row = {"id": "batch_1", "endpoint": "/v1/embeddings", "input_file_id": "file-1", "completion_window": "24h",
           "status": "validating", "created_at": 1, "expires_at": 86401, "total": 0, "completed": 0, "failed": 0,
           "output_file_id": None, "errors": None, "metadata": None, "usage": None}
    batch = batch_object(row)
    validate(batch, "Batch")
    assert "output_file_id" not in batch and "errors" not in batch and batch["expires_at"] == 86401
    done = batch_object({**row, "status": "failed", "failed_at": 5, "errors": [
        {"code": "mismatched_endpoint", "message": "line 2: ...", "param": "url", "line": 2}]})
    validate(done, "Batch")
    assert done["errors"]["object"] == "list" and done["errors"]["data"][0]["line"] == 2


def test_output_lines() -> None:
    ran = output_line(line_id="batch_req_1", custom_id="a", status_code=200, body={"x": 1}, request_id="req_1")
    assert ran == {"id": "batch_req_1", "custom_id": "a", "response": {"status_code": 200, "request_id": "req_1",
                                                                      "body": {"x": 1}}, "error": None}
    late = output_line(line_id="batch_req_2", custom_id="b", status_code=None, body=None, request_id=None,
                       error={"code": "batch_expired", "message": "m"})
    assert late["response"] is None and late["error"]["code"] == "batch_expired"
