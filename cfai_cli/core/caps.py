"""Hard caps on what one request may make the proxy do: upstream fan-out, fetched image bytes, stored chains.

Pure: standard library and cfai_cli.errors. Every cap is a 400 that names the parameter, decided on the
parsed request before any upstream call; the numbers are documented in docs/security.md.
"""

from __future__ import annotations

from cfai_cli.errors import InvalidRequest

MAX_PROMPTS = 64  # prompts in one /v1/completions request
MAX_GENERATIONS = 64  # upstream generations one request may ask for: prompts × n
MAX_STREAMS = 16  # upstream streams one request may hold open at once (prompts × n when streaming)
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit on `input` items
MAX_MODERATION_INPUTS = MAX_GENERATIONS  # each /v1/moderations input is one guard-model call
MAX_RERANK_DOCUMENTS = 1000  # Cohere's recommended most `documents` in one rerank request
MAX_RERANK_CALLS_AT_ONCE = 4  # upstream rerank batches one request runs side by side (the others wait)
MAX_IMAGE_PARTS = 16  # image parts across all messages of one chat or Responses request
MAX_FETCHED_IMAGE_BYTES = 32 * 1024 * 1024  # bytes fetched for all image URLs of one request
MAX_CHAIN_TURNS = 1000  # stored responses one previous_response_id chain may span
MAX_CHAIN_BYTES = 32 * 1024 * 1024  # stored JSON one previous_response_id chain may load


def check_generations(prompts: int, n: int, *, stream: bool) -> None:
    """Refuse a completions request that would fan out past the caps (each generation is an upstream call)."""
    if prompts > MAX_PROMPTS:
        raise InvalidRequest(f"'prompt' has {prompts} prompts; at most {MAX_PROMPTS} are allowed in one request.",
                             param="prompt", code="too_many_prompts")
    total = prompts * n
    if total > MAX_GENERATIONS:
        raise InvalidRequest(f"{prompts} prompts × n={n} asks for {total} completions; at most {MAX_GENERATIONS} "
                             "are allowed in one request.", param="n", code="too_many_generations")
    if stream and total > MAX_STREAMS:
        raise InvalidRequest(f"Streaming {prompts} prompts × n={n} would hold {total} upstream streams open; at most "
                             f"{MAX_STREAMS} are allowed in one streamed request (send fewer, or stream: false).",
                             param="n" if n > 1 else "prompt", code="too_many_streams")


def check_stream_share(streams: int, pool: int) -> None:
    """A streamed request holds a connection per stream until it ends: at most half the upstream pool, so it can
    never wait for connections it holds itself, and others' requests still find connections."""
    share = max(1, pool // 2)
    if streams > share:
        raise InvalidRequest(f"This streamed request needs {streams} upstream streams at once; this proxy's upstream "
                             f"pool (max_connections = {pool}) allows {share} per request. Ask for fewer, or set "
                             "stream: false.", param="n", code="too_many_streams")


def check_embedding_inputs(count: int) -> None:
    if count > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(f"'input' has {count} items; at most {MAX_EMBEDDING_INPUTS} are allowed in one request.",
                             param="input", code="too_many_inputs")


def check_moderation_inputs(count: int) -> None:
    if count > MAX_MODERATION_INPUTS:
        raise InvalidRequest(f"'input' has {count} items; at most {MAX_MODERATION_INPUTS} are allowed in one "
                             "moderations request (each is a call to the guard model).", param="input",
                             code="too_many_inputs")
def check_rerank_documents(count: int) -> None:
    if count > MAX_RERANK_DOCUMENTS:
        raise InvalidRequest(f"'documents' has {count} items; at most {MAX_RERANK_DOCUMENTS} are allowed in one "
                             "request.", param="documents", code="too_many_documents")


def check_image_parts(count: int) -> None:
    if count > MAX_IMAGE_PARTS:
        raise InvalidRequest(f"The request has {count} image parts; at most {MAX_IMAGE_PARTS} are allowed in one "
                             "request.", param="messages", code="too_many_images")


class ByteBudget:
    """Bytes one request may still fetch (image URLs); shared by its concurrent fetches."""

    def __init__(self, total: int | None = None) -> None:
        self.total = MAX_FETCHED_IMAGE_BYTES if total is None else total
        self.left = self.total

    def spend(self, size: int, *, param: str) -> None:
        self.left -= size
        if self.left < 0:
            raise InvalidRequest(f"The images fetched for this request exceed {self.total // (1024 * 1024)} MB in "
                                 "all; send fewer or smaller images.", param=param, code="images_too_large")


def check_chain(turns: int, size: int) -> None:
    """Refuse a previous_response_id chain that would load more than the caps allow."""
    if turns > MAX_CHAIN_TURNS or size > MAX_CHAIN_BYTES:
        raise InvalidRequest(
            f"The conversation behind previous_response_id is longer than cfai replays ({MAX_CHAIN_TURNS} turns or "
            f"{MAX_CHAIN_BYTES // (1024 * 1024)} MB of stored items); start a new conversation.",
            param="previous_response_id", code="conversation_too_long")
