"""The proxy's JSON answers: Starlette's JSONResponse, rendered by `core.jsonfast` (the same bytes, faster).

Imports starlette and core.
"""

from __future__ import annotations

from typing import Any

from starlette import responses

from cfai_cli.core import jsonfast


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsonfast.dumps(content)
