"""uvicorn's `ws` option for `cfai serve`: its automatic websocket protocol, imported by the first upgrade request.

Imports uvicorn only inside `websocket_protocol` (so only `serve()` and uvicorn's worker processes load it). The
proxy serves no websocket route: an upgrade request is refused by Starlette with a 403, as with `ws="auto"`.
What "auto" costs is importing the websockets library when uvicorn loads its config: 39-77 M instructions, 2.5-5 %
of `cfai serve`'s start-up to its first /health 200 (callgrind, issue 25, 2026-12-02).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any


def websocket_protocol(**options: Any) -> asyncio.Protocol:
    """What uvicorn's `ws="auto"` makes for an upgrade request, made by the first one."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    assert AutoWebSocketsProtocol is not None  # websocket_option() found a library
    return AutoWebSocketsProtocol(**options)


def websocket_option() -> Any:
    """uvicorn's `ws` option: `websocket_protocol` when a websocket library is installed (looked up, not
    imported), else "none", which is what "auto" resolves to without one."""
    if importlib.util.find_spec("websockets") is None and importlib.util.find_spec("wsproto") is None:
        return "none"
    return websocket_protocol
