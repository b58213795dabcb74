"""The `x-session-affinity` value for a Workers AI chat call: which requests share a conversation.

Pure: the standard library and core.openai. Workers AI sends requests with the same `x-session-affinity` to the
same replica, whose prefix cache then serves the prompt's shared beginning at a lower price (reference §2.11,
developers.cloudflare.com/workers-ai/features/prompt-caching). A value the client set wins; otherwise the first
signal found below names the conversation, and the id sent is a hash of it salted with the tenant (the API key
id), so two tenants never share an id and no user text or user name leaves the proxy in a header:

  1. the client's own `x-session-affinity` header (passed on verbatim: the client chose it);
  2. `prompt_cache_key` (OpenAI's field for exactly this);
  3. a Responses `previous_response_id` chain: the affinity its turns were asked with (kept with each stored
     response, so turn 2 reaches turn 1's replica), else the chain's root response id;
  4. `user` (Anthropic's `metadata.user_id` arrives as `user`);
  5. the system prompt and first user message: every request of one conversation begins with them.
"""

from __future__ import annotations

from hashlib import blake2b

from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.errors import InvalidRequest

HEADER = "x-session-affinity"
MAX_EXPLICIT = 256  # characters of a client's own value; longer ones are refused, not cut (cutting merges ids)
PREFIX = "cfai-"  # derived ids are told apart from clients' own at a glance (and in the emulator's echo)
# Characters of each opening message hashed (with its length): agents' system prompts run to tens of kilobytes,
# and two conversations that share this much of their beginning gain from one replica anyway.
OPENING_CHARS = 4096


def check_explicit(value: str | None) -> str | None:
    """A client's `x-session-affinity` header as it will be sent on; None when absent or empty."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_EXPLICIT or not value.isascii() or not value.isprintable():
        raise InvalidRequest(f"The '{HEADER}' header must be at most {MAX_EXPLICIT} printable ASCII characters.",
                             param=HEADER, code="invalid_value")
    return value.strip()


def _opening(req: ChatCompletionRequest) -> str | None:
    """The leading system/developer messages and the first user message, as text; None when there is no text."""
    parts: list[str] = []
    for message in req.messages:
        if message.role in ("system", "developer", "user"):
            text = message.text()
            parts.append(f"{len(text)}:{text[:OPENING_CHARS]}")
        if message.role not in ("system", "developer"):
            break  # the conversation's first turn decides; later turns grow it
    return "\x1e".join(parts) if any(not part.endswith(":") for part in parts) else None


def session_affinity(req: ChatCompletionRequest, *, tenant: str | None, explicit: str | None = None,
                     chain_affinity: str | None = None, chain_root: str | None = None) -> str | None:
    """The `x-session-affinity` value for `req` (see the module docstring for the order), or None."""
    if explicit is not None:
        return explicit
    if req.prompt_cache_key:
        kind, value = "key", req.prompt_cache_key
    elif chain_affinity:
        return chain_affinity  # already this tenant's value, chosen when the chain began
    elif chain_root:
        kind, value = "chain", chain_root
    elif req.user:
        kind, value = "user", req.user
    else:
        opening = _opening(req)
        if opening is None:
            return None
        kind, value = "prefix", opening
    digest = blake2b(digest_size=16)
    # NUL-separated so ("ab", "c") and ("a", "bc") never meet; the tenant first, so it salts everything after.
    digest.update(f"{tenant or ''}\x00{kind}\x00".encode())
    digest.update(value.encode("utf-8", "surrogatepass"))
    return PREFIX + digest.hexdigest()
