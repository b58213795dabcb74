"""Embeddings translation: request checks naming the index, batching in order, vector shapes, base64, shortening."""

from __future__ import annotations

import math
import struct

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.embeddings import EmbeddingRequest
from cfai_cli.core.translate.embeddings import (
    MAX_INPUT_CHARS,
    EmbeddingModel,
    batches,
    check_request,
    decode_base64,
    embedding_model,
    encode_base64,
    from_workers_embeddings,
    longest,
    parse_vectors,
    rank_by_similarity,
    shorten,
)
from cfai_cli.errors import InvalidRequest, UpstreamError

BGE = embedding_model("@cf/baai/bge-base-en-v1.5")
GEMMA = embedding_model("@cf/google/embeddinggemma-300m")


def req(**fields: object) -> EmbeddingRequest:
    return validate_request(EmbeddingRequest, {"model": "text-embedding-3-small", **fields})


@pytest.mark.parametrize(("fields", "param", "words"), [
    ({"input": ""}, "input", "empty"),
    ({"input": "   "}, "input", "empty"),
    ({"input": []}, "input", "empty list"),
    ({"input": ["ok", "", "fine"]}, "input[1]", "empty"),
    ({"input": ["ok", "x" * (MAX_INPUT_CHARS + 1)]}, "input[1]", "too long"),
    ({"input": "hello", "dimensions": 1024}, "dimensions", "have 768 dimensions"),
])
def test_bad_inputs_name_the_offending_index(fields: dict[str, object], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_request(req(**fields), BGE)
    assert info.value.param == param and words in info.value.message


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]]])
def test_token_arrays_are_refused_with_advice(tokens: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        req(input=tokens)
    assert info.value.param == "input" and "send the text" in info.value.message
    assert "check_embedding_ctx_length=False" in info.value.message


@pytest.mark.parametrize("model_id", ["@cf/baai/bge-small-en-v1.5", "@cf/baai/bge-base-en-v1.5",
                                      "@cf/baai/bge-large-en-v1.5", "@cf/baai/bge-m3",
                                      "@cf/google/embeddinggemma-300m", "@cf/qwen/qwen3-embedding-0.6b"])
def test_every_model_takes_dimensions_up_to_its_native_size(model_id: str) -> None:
    spec = embedding_model(model_id)
    assert spec.dims is not None
    for dims in (1, 256, spec.dims):
        assert check_request(req(input="x", dimensions=dims), spec) == ["x"]
    with pytest.raises(InvalidRequest) as info:
        check_request(req(input="x", dimensions=spec.dims + 1), spec)
    assert info.value.param == "dimensions" and f"have {spec.dims} dimensions" in info.value.message
    with pytest.raises(InvalidRequest):
        req(input="x", dimensions=0)


def test_dimensions_of_a_model_of_unknown_size_are_checked_against_its_vectors() -> None:
    texts = ["a"]
    vectors = [[3.0, 4.0, 12.0, 0.0]]
    shortened = from_workers_embeddings(req(input=texts, dimensions=2), texts, vectors, model_id="@cf/m")
    assert shortened["data"][0]["embedding"] == pytest.approx([0.6, 0.8])
    b64 = from_workers_embeddings(req(input=texts, dimensions=2, encoding_format="base64"), texts, vectors,
                                  model_id="@cf/m")
    assert decode_base64(b64["data"][0]["embedding"]) == pytest.approx([0.6, 0.8])  # type: ignore[arg-type]
    native = from_workers_embeddings(req(input=texts, dimensions=4), texts, vectors, model_id="@cf/m")
    assert native["data"][0]["embedding"] == vectors[0]
    with pytest.raises(InvalidRequest, match="have 4 dimensions"):
        from_workers_embeddings(req(input=texts, dimensions=5), texts, vectors, model_id="@cf/m")


def test_batches_keep_order_and_respect_each_models_cap() -> None:
    texts = [f"t{i}" for i in range(250)]
    plan = batches(texts, BGE)
    assert [(start, len(b)) for start, b in plan] == [(0, 100), (100, 100), (200, 50)]
    assert [t for _, b in plan for t in b] == texts
    qwen = embedding_model("@cf/qwen/qwen3-embedding-0.6b")
    assert [len(b) for _, b in batches(texts[:70], qwen)] == [32, 32, 6]
    assert embedding_model("@cf/acme/unknown-embedder") == EmbeddingModel()


@pytest.mark.parametrize("result", [
    {"shape": [2, 3], "data": [[1, 0, 0], [0, 1.5, 0]], "pooling": "mean"},
    {"shape": [2, 3], "response": [[1, 0, 0], [0, 1.5, 0]]},
])
def test_vectors_from_every_result_shape(result: dict[str, object]) -> None:
    vectors = parse_vectors(result, 2)
    assert vectors == [[1.0, 0.0, 0.0], [0.0, 1.5, 0.0]]
    assert {type(x) for vector in vectors for x in vector} == {float}  # JSON integers become floats too


@pytest.mark.parametrize("result", [
    {"data": [[1.0]]}, {"shape": [2, 1]}, {"data": [[1.0], ["x"]]}, {"data": [[1.0], []]}, [[1.0], [2.0]],
    {"data": [[True], [1.0]]}, {"data": [[1.0, 2.0], [0.5, False]]}, {"data": [[1.0, None], [1.0, 2.0]]},
    {"data": [[1.0], {"0": 1.0}]}, {"data": [[1.0], [[1.0]]]},
])
def test_malformed_vectors_are_upstream_errors(result: object) -> None:
    with pytest.raises(UpstreamError):
        parse_vectors(result, 2)


def test_base64_is_little_endian_float32_and_round_trips() -> None:
    vector = [0.1, -2.5, 3.0, 1e-8]
    encoded = encode_base64(vector)
    assert struct.unpack("<4f", __import__("base64").b64decode(encoded)) == pytest.approx(vector, rel=1e-6)
    assert decode_base64(encoded) == pytest.approx(vector, rel=1e-6)


def test_shorten_renormalises() -> None:
    short = shorten([3.0, 4.0, 12.0], 2)
    assert short == pytest.approx([0.6, 0.8])
    assert math.isclose(sum(x * x for x in short), 1.0)


def test_list_object_float_and_base64() -> None:
    texts = ["abcd", "abcdefgh"]
    vectors = [[1.0, 0.0], [0.0, 1.0]]
    floats = from_workers_embeddings(req(input=texts), texts, vectors, model_id="@cf/m")
    assert floats["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]}
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # estimated: 4 characters a token
    b64 = from_workers_embeddings(req(input=texts, encoding_format="base64"), texts, vectors, model_id="@cf/m",
                                  prompt_tokens=7)
    assert decode_base64(b64["data"][0]["embedding"]) == [1.0, 0.0]  # type: ignore[arg-type]
    assert b64["usage"]["prompt_tokens"] == 7


def test_longest_and_ranking() -> None:
    assert longest(["a", "abc", "ab"], start=100) == 101
    ranked = rank_by_similarity([1.0, 0.0], [[0.0, 1.0], [1.0, 0.1], [1.0, 0.0], [-1.0, 0.0]], top=3)
    assert [i for i, _ in ranked] == [2, 1, 0]
    assert ranked[0][1] == pytest.approx(1.0)
