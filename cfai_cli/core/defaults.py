"""The model a request without one gets, per kind: their one place (core.catalog re-exports them).

No imports: the command modules whose options show these defaults import this, not the catalogue and its price
table, because `cfai --help` imports every command module to list it.
"""

from __future__ import annotations

DEFAULT_CHAT_MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
# What a rerank request without `model` gets (Cohere's v1 API made it optional); an alias, so [aliases] moves it.
DEFAULT_RERANK_MODEL = "rerank-v3.5"
