"""Emulated Workers AI image models (reference §5): each family's request rules and its answer shape.

Imports the standard library and the emulator's own modules. Pictures are real PNGs (a
gradient derived from the prompt and seed, so different seeds give different images) or, for phoenix,
a small fixed JPEG; flux-1-schnell and flux-2 answer JSON base64, the SDXL family raw image/png.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.wire import EmulatorError, bad_input, digest, envelope, json_response

_JPEG_64 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZGNywtQFdBRkxOUlNSMj5aYVpQYEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT0//wAARCABAAEADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDgVjqZY6lWOpljr3JTMqVQiWOpljqVY6mWOsZTPTpVCFY6mWOpljqZY6xlM9KlUIVjqZY6mWOpljrGUz0qVQwVjqZY6mWOpVjraUz85pVCJY6mWOpVjqZY6xlM9KlUIljqVY6mWOpljrGUz06VQhWOpljqZY6mWOsJTPSpVDBWOpljqZY6mWOt5TPzmlUIVjqZY6lWOpljrGUz0qVQiWOpljqVY6mWOsJTPSpVCFY6mWOpljqZY6xlM9OlUMFY6mWOpljqZY63lM/OKVQhWOpljqZY6lWOsZTPTpVCJY6mWOpVjqZY6wlM9KlUIljqVY6mWOpljrGUz0qVQ//Z"
)
_SDXL = {"@cf/stabilityai/stable-diffusion-xl-base-1.0", "@cf/bytedance/stable-diffusion-xl-lightning",
         "@cf/lykon/dreamshaper-8-lcm"}
_EDIT = {"@cf/runwayml/stable-diffusion-v1-5-img2img", "@cf/runwayml/stable-diffusion-v1-5-inpainting"}
_SDXL_KEYS = {"prompt", "negative_prompt", "height", "width", "image", "image_b64", "mask", "num_steps", "strength",
              "guidance", "seed"}
MULTIPART_MODELS = {"@cf/black-forest-labs/flux-2-dev", "@cf/black-forest-labs/flux-2-klein-4b",
                    "@cf/black-forest-labs/flux-2-klein-9b"}
MODELS = {"@cf/black-forest-labs/flux-1-schnell", "@cf/leonardo/phoenix-1.0", *_SDXL, *_EDIT, *MULTIPART_MODELS}


def png(width: int, height: int, key: bytes) -> bytes:
    """A real RGB PNG: a gradient whose colours come from `key` (prompt + seed)."""
    r0, g0, b0 = key[0], key[1], key[2]
    rows = bytearray()
    pattern = bytes((r0 + x) % 256 for x in range(256))
    for y in range(height):
        line = bytearray(3 * width)
        line[0::3] = (pattern * (width // 256 + 1))[:width]
        line[1::3] = bytes([(g0 + y) % 256]) * width
        line[2::3] = bytes([b0]) * width
        rows += b"\x00" + line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 1)) + chunk(
        b"IEND", b"")


def _int(body: Mapping[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_input(f"'/{key}' must be integer >= {low} and <= {high}")
    return value


def _prompt(body: Mapping[str, Any], limit: int = 2048) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_input("required properties at '/' are 'prompt'")
    if len(prompt) > limit:
        raise bad_input(f"'/prompt' must NOT have more than {limit} characters")
    if "forbidden" in prompt.lower():
        # How a refused prompt looks is unconfirmed; this lets cfai's content-policy path be exercised.
        raise EmulatorError(400, 3030, "AiError: AiError: Input prompt contains NSFW content.")
    return prompt


def run(model: str, body: Mapping[str, Any]) -> Response:
    """A JSON-bodied image model call."""
    key = digest(model, repr(sorted(body.items(), key=lambda kv: kv[0])))
    if model == "@cf/black-forest-labs/flux-1-schnell":
        extra = set(body) - {"prompt", "steps"}
        if extra:  # additionalProperties: false
            raise bad_input(f"must NOT have additional properties ('{sorted(extra)[0]}')")
        _prompt(body)
        _int(body, "steps", 1, 8, 4)
        return json_response(envelope({"image": base64.b64encode(png(1024, 1024, key)).decode("ascii")}))
    if model == "@cf/leonardo/phoenix-1.0":
        _prompt(body)
        return Response(_JPEG_64, media_type="image/jpeg")
    extra = set(body) - _SDXL_KEYS
    if extra:
        raise bad_input(f"must NOT have additional properties ('{sorted(extra)[0]}')")
    _prompt(body, limit=100_000)
    width, height = _int(body, "width", 256, 2048, 1024), _int(body, "height", 256, 2048, 1024)
    _int(body, "num_steps", 1, 20, 20)
    if model in _EDIT:
        if not isinstance(body.get("image_b64"), str) and not isinstance(body.get("image"), list):
            raise bad_input("required properties at '/' are 'image'")
        if model.endswith("inpainting") and not isinstance(body.get("mask"), list):
            raise bad_input("required properties at '/' are 'mask'")
        if body.get("width") is None:
            width = height = 512
    return Response(png(width, height, key), media_type="image/png")


def run_multipart(model: str, form: Mapping[str, Any]) -> Response:
    """flux-2 takes multipart/form-data even for a prompt alone (reference §5)."""
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    _prompt(fields)
    width, height = _int(fields, "width", 256, 1920, 1024), _int(fields, "height", 256, 1920, 768)
    key = digest(model, repr(sorted(fields.items())))
    return json_response(envelope({"image": base64.b64encode(png(width, height, key)).decode("ascii")}))
