"""What of a client's chat request goes on to an OpenAI-compatible upstream: the OpenAI schema's fields only.

Pure: the standard library. Inbound requests keep unknown fields (lenient in), but passing them on would let
any client steer a provider by its own routing fields (OpenRouter's `provider`, `models`, `route`,
`transforms`; others' fallbacks, budgets or logging switches), which is the operator's decision: an upstream
gets the fields of CreateChatCompletionRequest in the OpenAI spec, plus the `extra_fields` its config names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# CreateChatCompletionRequest with its allOf parts (CreateModelResponseProperties, ModelResponseProperties);
# tests/core/test_passthrough.py checks this against the committed OpenAI schema subset.
CHAT_REQUEST_FIELDS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "messages", "metadata", "modalities", "model", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options",
})


def openai_fields(body: Mapping[str, Any], extra: Iterable[str] = ()) -> dict[str, Any]:
    """`body` without the top-level fields that are neither OpenAI's nor in `extra`."""
    allowed = CHAT_REQUEST_FIELDS.union(extra)
    return {name: value for name, value in body.items() if name in allowed}
