"""Emulated Workers AI embedding models (reference §4): `{text}` in, `{shape, data, pooling}` out.

Imports only the standard library and the emulator's own modules. Vectors are hashed bags of
words, unit length: deterministic, and texts sharing words really are closer, so offline ranking works.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.wire import EmulatorError, bad_input, envelope, json_response

# model -> (dimensions, most texts per call, longest text in tokens, output key)
MODELS: dict[str, tuple[int, int, int, str]] = {
    "@cf/baai/bge-small-en-v1.5": (384, 100, 512, "data"),
    "@cf/baai/bge-base-en-v1.5": (768, 100, 512, "data"),
    "@cf/baai/bge-large-en-v1.5": (1024, 100, 512, "data"),
    "@cf/baai/bge-m3": (1024, 100, 8192, "data"),
    "@cf/google/embeddinggemma-300m": (768, 100, 2048, "data"),
    "@cf/qwen/qwen3-embedding-0.6b": (1024, 32, 8192, "data"),
}
_WORD = re.compile(r"\w+", re.UNICODE)


def vector(text: str, dims: int) -> list[float]:
    values = [0.0] * dims
    words = _WORD.findall(text.lower()) or [text]
    for word in words:
        h = hashlib.blake2b(word.encode("utf-8"), digest_size=32).digest()
        # One component per prefix scale, so a shortened (Matryoshka) prefix still carries every word.
        for j, scale in enumerate((32, 128, 512, dims)):
            chunk = h[4 * j : 4 * j + 4]
            values[int.from_bytes(chunk, "little") % min(scale, dims)] += 1.0 if h[16 + j] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _texts(body: Mapping[str, Any], key: str) -> list[str]:
    if "contexts" in body and key == "response":
        contexts = body["contexts"]
        if not isinstance(contexts, list) or not all(isinstance(c, dict) for c in contexts):
            raise bad_input("'/contexts' must be array of objects")
        return [str(c.get("text", "")) for c in contexts]
    text = body.get("text", body.get("documents"))
    if isinstance(text, str):
        return [text]
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        return text
    raise bad_input("required properties at '/' are 'text'")


def run(model: str, body: Mapping[str, Any]) -> Response:
    dims, cap, max_tokens, _ = MODELS[model]
    contexts_mode = "contexts" in body and "text" not in body
    texts = _texts(body, "response" if contexts_mode else "data")
    if not texts or len(texts) > cap:
        raise bad_input(f"'/text' must NOT have more than {cap} items" if texts else "'/text' must NOT be empty")
    for text in texts:
        if not text:
            raise bad_input("'/text/0' must NOT have fewer than 1 characters")
        tokens = len(text.split())
        if tokens > max_tokens:
            raise EmulatorError(400, 3030, f"AiError: AiError: Sequence too long: {tokens} > {max_tokens}")
    vectors = [vector(t, dims) for t in texts]
    result: dict[str, Any] = {"shape": [len(texts), dims], "pooling": "mean"}
    result["response" if contexts_mode else "data"] = vectors
    return json_response(envelope(result))
