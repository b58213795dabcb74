"""httpx's exceptions for code that runs without importing httpx: the lean transport's wire work and the Workers
AI client's JSON and streamed calls (upstream.lean, upstream.http11, upstream.pool, upstream.workers).

Their failures are httpx's exception classes, so that every caller catches one family whichever transport
carried the request; but `import httpx` (with the standard library it imports at the top: urllib.request,
http.client, the email package, http.cookiejar, mimetypes, idna) was ~100 M of the ~800 M instructions of
`cfai chat hi`, which sends its one request as bytes (callgrind, issue 25 round 6, 2026-12-02). So httpx is
imported when a failure is raised (`http_error`), and an `except` clause names its classes through `caught`,
which Python evaluates only when an exception is on its way: before httpx is imported no httpx exception can
exist, and an empty tuple, which catches nothing, stands in. Imports the standard library only.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


def http_error(name: str, message: str) -> httpx.HTTPError:
    """httpx's exception `name` (ReadTimeout, ConnectError, RemoteProtocolError, ...) with `message`."""
    import httpx

    error: httpx.HTTPError = getattr(httpx, name)(message)
    return error


def caught(*names: str, also: tuple[type[BaseException], ...] = ()) -> tuple[type[BaseException], ...]:
    """httpx's exception classes `names` and the classes `also`, for an `except` clause; httpx's are none (nothing
    to catch) before httpx is imported."""
    module = sys.modules.get("httpx")
    if module is None:
        return also
    return also + tuple(getattr(module, name) for name in names)


def describe_http_error(exc: BaseException) -> str:
    """An httpx error in words, without the request (whose headers hold the token)."""
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
