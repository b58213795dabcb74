"""Legacy Completions -> Chat Completions and back, as pure functions.

Pure: pydantic, the standard library, cfai_cli.errors and cfai_cli.core. Each prompt becomes one user
message on the chat path (Workers AI applies the model's chat template to a native `prompt` too, so
nothing is lost), which gives every model, stop sequences, `n` and streaming for free.
"""

from __future__ import annotations

from typing import Any

from cfai_cli.core.caps import check_generations
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, FinishReason, Usage
from cfai_cli.core.openai.completions import CompletionChoice, CompletionFinish, CompletionRequest, TextCompletion
from cfai_cli.errors import InvalidRequest


def _unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_parameter")


def prompts(req: CompletionRequest) -> list[str]:
    """The prompts to complete, refusing clearly what Workers AI cannot do."""
    if req.suffix:
        raise _unsupported("'suffix' (fill-in-the-middle) is not supported: Workers AI models only continue a "
                           "prompt.", "suffix")
    if req.logprobs is not None:
        raise _unsupported("'logprobs' is not available from Workers AI; leave it out.", "logprobs")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise _unsupported("'best_of' is not supported; use 'n' for several completions.", "best_of")
    prompt = req.prompt
    if isinstance(prompt, str):
        texts = [prompt]
    elif not prompt:
        raise InvalidRequest("'prompt' must not be an empty list.", param="prompt", code="invalid_value")
    elif all(isinstance(p, str) for p in prompt):
        texts = [p for p in prompt if isinstance(p, str)]
    else:
        texts = []
    if texts:
        check_generations(len(texts), req.n or 1, stream=bool(req.stream))
        return texts
    raise _unsupported("Token-id prompts are not supported (Workers AI models have their own tokenizers); "
                       "send the prompt as text.", "prompt")


def to_chat_request(req: CompletionRequest, prompt: str, *, stream: bool) -> ChatCompletionRequest:
    body: dict[str, Any] = {"model": req.model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    for name in ("max_tokens", "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty",
                 "seed", "user"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    return validate_request(ChatCompletionRequest, body)


def _cached(usage: Usage) -> int:
    details = usage.get("prompt_tokens_details")
    return details.get("cached_tokens", 0) if details else 0


def add_usage(total: Usage | None, usage: Usage) -> Usage:
    """`usage` added to `total` (None: nothing yet), as a completion's usage: the prompts' chat usages summed."""
    if total is None:
        total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    out: Usage = {"prompt_tokens": total["prompt_tokens"] + usage["prompt_tokens"],
                  "completion_tokens": total["completion_tokens"] + usage["completion_tokens"],
                  "total_tokens": total["total_tokens"] + usage["total_tokens"]}
    cached = _cached(total) + _cached(usage)
    if cached:  # the prefix cache's share of the prompts (core.affinity), as chat reports it
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def finish_reason(reason: FinishReason | None) -> CompletionFinish | None:
    # tool_calls cannot happen (no tools are sent); anything else that is not a limit is a natural stop.
    if reason is None:
        return None
    return reason if reason in ("length", "content_filter") else "stop"


def choices_from_chat(completion: ChatCompletion, prompt: str, *, echo: bool, base: int) -> list[CompletionChoice]:
    return [{"text": (prompt if echo else "") + (choice["message"]["content"] or ""), "index": base + choice["index"],
             "logprobs": None, "finish_reason": finish_reason(choice["finish_reason"])}
            for choice in completion["choices"]]


def text_completion(choices: list[CompletionChoice], *, completion_id: str, created: int, model: str
                    ) -> TextCompletion:
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "choices": choices}


def chunk_choices(chunk: ChatCompletionChunk, prompt: str, *, echo: bool, base: int, started: set[int]
                  ) -> list[CompletionChoice]:
    """A chat chunk's choices as completion choices; `started` tracks which choices already echoed."""
    out: list[CompletionChoice] = []
    for choice in chunk["choices"]:
        index = base + choice["index"]
        text = choice["delta"].get("content") or ""
        if echo and index not in started:
            text = prompt + text
        started.add(index)
        reason = finish_reason(choice["finish_reason"])
        if text or reason is not None:
            out.append({"text": text, "index": index, "logprobs": None, "finish_reason": reason})
    return out
