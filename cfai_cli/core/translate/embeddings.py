"""Embeddings <-> Workers AI: per-model batch caps, batching in order, vector parsing, base64 and shortening.

Pure: standard library, cfai_cli.errors and cfai_cli.core. What each model accepts is data here
(reference §4); unknown embedding models get the common `{text: [...]}` shape and a batch of 100.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfai_cli.core.jsonfast import RawJson
from cfai_cli.core.openai.embeddings import EmbeddingList, EmbeddingOut, EmbeddingRequest
from cfai_cli.core.translate.chat_answer import estimate_tokens
from cfai_cli.core.workers.vector_cut import CutVectors
from cfai_cli.errors import InvalidRequest, UpstreamError

# Far beyond any embedding model's context whatever the tokenizer: refused before it costs a call.
MAX_INPUT_CHARS = 8192 * 8


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    batch: int = 100  # most texts one upstream call takes
    dims: int | None = None  # native vector length, when known


EMBEDDING_MODELS: dict[str, EmbeddingModel] = {
    "@cf/baai/bge-small-en-v1.5": EmbeddingModel(dims=384),
    "@cf/baai/bge-base-en-v1.5": EmbeddingModel(dims=768),
    "@cf/baai/bge-large-en-v1.5": EmbeddingModel(dims=1024),
    "@cf/baai/bge-m3": EmbeddingModel(dims=1024),
    "@cf/google/embeddinggemma-300m": EmbeddingModel(dims=768),
    "@cf/qwen/qwen3-embedding-0.6b": EmbeddingModel(batch=32, dims=1024),
    "@cf/pfnet/plamo-embedding-1b": EmbeddingModel(),
}


def embedding_model(model_id: str) -> EmbeddingModel:
    return EMBEDDING_MODELS.get(model_id, EmbeddingModel())


def check_request(req: EmbeddingRequest, spec: EmbeddingModel) -> list[str]:
    """The texts to embed, after the checks OpenAI makes (each failure names its index)."""
    texts = req.texts()
    if not texts:
        raise InvalidRequest("'input' must not be an empty list.", param="input", code="invalid_value")
    # Looked at by C first, and one by one (in order, to name the first failure) only when one fails: the loop
    # building each input's name was ~10 ms of CPU for 2,048 inputs (bench/payload_cpu.py).
    fine = all(map(str.strip, texts)) and max(map(len, texts)) <= MAX_INPUT_CHARS
    for i, text in enumerate(() if fine else texts):
        param = "input" if isinstance(req.input, str) else f"input[{i}]"
        if not text.strip():
            raise InvalidRequest(f"{param} is empty: every input must contain text.", param=param,
                                 code="invalid_value")
        if len(text) > MAX_INPUT_CHARS:
            raise InvalidRequest(f"{param} is too long ({len(text)} characters); split it into smaller pieces.",
                                 param=param, code="context_length_exceeded")
    if req.dimensions is not None and spec.dims is not None and req.dimensions > spec.dims:
        raise too_many_dimensions(req.dimensions, spec.dims)
    return texts


def too_many_dimensions(asked: int, native: int) -> InvalidRequest:
    return InvalidRequest(f"'dimensions' is {asked}, but this model's vectors have {native} dimensions: ask for "
                          f"{native} or fewer (or omit 'dimensions').", param="dimensions", code="invalid_value")


def batches(texts: Sequence[str], spec: EmbeddingModel) -> list[tuple[int, list[str]]]:
    """(index of the first text, texts) for each upstream call, in input order."""
    size = max(1, spec.batch)
    return [(start, list(texts[start : start + size])) for start in range(0, len(texts), size)]


def to_workers_embeddings(texts: Sequence[str]) -> dict[str, Any]:
    return {"text": list(texts)}


def parse_vectors(result: Any, expected: int, *, as_json: bool = False) -> list[list[float]] | list[RawJson]:
    """Vectors from `{data: [[...]]}` (bge, gemma, qwen3) or `{response: [[...]]}` (bge-m3 contexts mode).
    `as_json`: each vector as the text Workers AI sent when it was checked (core.workers.vector_cut), for an
    answer that only writes them out again."""
    vectors = None
    cut = result.get("data") if isinstance(result, Mapping) else None
    if isinstance(cut, CutVectors):
        if cut.count != expected:
            raise UpstreamError(f"Workers AI returned {cut.count} vectors for {expected} inputs.")
        if as_json:
            return cut.json_vectors()
        if cut.values is None:  # decoded for their text only (service.embeddings asks so only with as_json)
            raise TypeError("These vectors were decoded without their floats.")
        return cut.values
    if isinstance(result, Mapping):
        for key in ("data", "response", "embeddings"):
            if isinstance(result.get(key), list):
                vectors = result[key]
                break
    if vectors is None or len(vectors) != expected:
        got = "no vectors" if vectors is None else f"{len(vectors)} vectors"
        raise UpstreamError(f"Workers AI returned {got} for {expected} inputs.")
    out: list[list[float]] = []
    for vector in vectors:
        # The element types gathered by C (map over `type`), not a Python test per number: a per-number
        # isinstance check was 80% of the proxy's CPU for 2,048 inputs (bench/payloads.py). `bool` is its own
        # type, so JSON true/false are refused as before; a vector of floats is used as it is.
        kinds = set(map(type, vector)) if isinstance(vector, list) else None
        if not vector or kinds is None or not kinds <= _NUMBER_TYPES:
            raise UpstreamError("Workers AI returned an embedding that is not a list of numbers.")
        out.append(vector if kinds == _FLOAT_ONLY else list(map(float, vector)))
    return out


_NUMBER_TYPES = frozenset({int, float})
_FLOAT_ONLY = {float}


def shorten(vector: Sequence[float], dims: int) -> list[float]:
    """The first `dims` values, re-normalised to unit length: what OpenAI's text-embedding-3 `dimensions` does.
    Models trained for it (Matryoshka: EmbeddingGemma, Qwen3-Embedding) lose little; BGE loses more."""
    head = list(vector[:dims])
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm else head


def encode_base64(vector: Sequence[float]) -> str:
    """Little-endian float32, base64: what the OpenAI SDKs decode when they ask for `base64`."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_base64(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def from_workers_embeddings(
    req: EmbeddingRequest, texts: Sequence[str], vectors: Sequence[Sequence[float] | RawJson | str], *,
    model_id: str, prompt_tokens: int | None = None,
) -> EmbeddingList:
    """The OpenAI list; a vector given as JSON text (`parse_vectors(as_json=True)`, for a float answer at the
    model's own size) or already in base64 (`encode_base64`, done batch by batch) is written as it is."""
    data: list[EmbeddingOut] = []
    for index, vector in enumerate(vectors):
        if isinstance(vector, RawJson | str):
            data.append({"object": "embedding", "index": index, "embedding": vector})
            continue
        if req.dimensions is not None and req.dimensions > len(vector):  # a model whose size was not known
            raise too_many_dimensions(req.dimensions, len(vector))
        if req.dimensions and req.dimensions < len(vector):
            values = shorten(vector, req.dimensions)
        else:  # no copy of a list: 2,048 vectors of 768 are ~13 MB of pointers alone
            values = vector if isinstance(vector, list) else list(vector)
        embedding: list[float] | str = encode_base64(values) if req.encoding_format == "base64" else values
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = prompt_tokens if prompt_tokens is not None else sum(estimate_tokens(t) for t in texts)
    return {"object": "list", "data": data, "model": model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def longest(texts: Sequence[str], start: int) -> int:
    """Index (in the whole input) of the longest text of a batch: the likely cause of a length error."""
    return start + max(range(len(texts)), key=lambda i: len(texts[i]))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def rank_by_similarity(query: Sequence[float], vectors: Sequence[Sequence[float]], top: int) -> list[tuple[int, float]]:
    """(index, cosine similarity) of the `top` vectors closest to `query`, best first; ties keep input order."""
    scored = [(i, cosine(query, v)) for i, v in enumerate(vectors)]
    scored.sort(key=lambda pair: -pair[1])
    return scored[: max(0, top)]
