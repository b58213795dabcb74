"""The HTTP library the installed `openai` SDK talks through: httpx2 from openai 3 on, httpx before.

Tests hand the SDK an `http_client` built on the in-process app; it must be of the SDK's own library.
"""

from __future__ import annotations

try:
    import httpx2 as sdk_httpx  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed SDK
    import httpx as sdk_httpx  # type: ignore[no-redef]

__all__ = ["sdk_httpx"]
