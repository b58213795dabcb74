"""cfai: Cloudflare Workers AI from the command line, and an OpenAI- and Anthropic-compatible proxy."""

import sys

__version__ = "0.1.0"

# httpx's __init__ tries `from ._main import main` (its own `httpx` command), which imports click, rich and
# pygments whenever they are installed (uvicorn and typer bring them): ~60 ms of every `cfai` command and of
# `cfai serve`'s start-up, for a function cfai never calls. A None entry makes that import fail the way httpx
# expects when its CLI extra is missing, and httpx then defines a stub `main`. Before httpx is imported only.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
