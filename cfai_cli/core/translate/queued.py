"""One OpenAI batch line <-> one request of a Workers AI async batch (reference §2.11), for chat completions,
legacy completions and embeddings, by the live path's own translators.

Pure: pydantic, the standard library, cfai_cli.errors and cfai_cli.core. A queued request is the model's normal
input (what `to_workers_chat` / `to_workers_embeddings` build for one live call), and its result is read by
the live path's parsers (`parse_chat_result`, `parse_vectors`) into the same OpenAI bodies. A line the live
path would answer with more than one upstream call, or with a second call depending on the first, is not
queueable (`plan_line` gives None): streaming, `n` > 1, several prompts, more texts than one embeddings call
takes, images (fetched and inlined live), forced tool calls (checked and retried live, service.forced). So is
a line the live path would refuse: it runs live and gets the live path's own 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.openai.completions import CompletionRequest
from cfai_cli.core.openai.embeddings import EmbeddingRequest
from cfai_cli.core.translate.chat import WorkersChatCall, to_workers_chat
from cfai_cli.core.translate.chat_answer import from_workers_chat
from cfai_cli.core.translate.completions import add_usage, choices_from_chat, prompts, text_completion, to_chat_request
from cfai_cli.core.translate.embeddings import (
    check_request,
    embedding_model,
    from_workers_embeddings,
    parse_vectors,
    to_workers_embeddings,
)
from cfai_cli.core.workers.chat import parse_chat_result, parse_usage
from cfai_cli.core.workers.envelope import map_error
from cfai_cli.core.workers.queue import QueueItem
from cfai_cli.errors import CfaiError, InvalidRequest

Endpoint = Literal["/v1/chat/completions", "/v1/embeddings", "/v1/completions"]
ENDPOINTS: tuple[Endpoint, ...] = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions")
# The catalogue task each endpoint's models have (reference §9.1).
ENDPOINT_TASKS: dict[str, str] = {"/v1/chat/completions": "Text Generation", "/v1/completions": "Text Generation",
                                  "/v1/embeddings": "Text Embeddings"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A queued request's result as the OpenAI body of its line, with the tokens it used."""

    body: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int


def _chat_plan(req: ChatCompletionRequest, model_id: str, default_max_tokens: int) -> WorkersChatCall | None:
    if req.stream or (req.n or 1) != 1 or req.has_images():
        return None
    call = to_workers_chat(req, model_id, default_max_tokens=default_max_tokens, stream=False)
    return None if call.forced_tools else call


def _completion_chat(req: CompletionRequest) -> ChatCompletionRequest | None:
    texts = prompts(req)
    if req.stream or (req.n or 1) != 1 or len(texts) != 1:
        return None
    return to_chat_request(req, texts[0], stream=False)


def plan_line(endpoint: str, body: Mapping[str, Any], model_id: str, *, default_max_tokens: int
              ) -> dict[str, Any] | None:
    """The Workers AI input of one queued request for a line's OpenAI `body`, or None if the line is not
    queueable (see the module docstring). `model_id` is the Workers AI model the batch runs on."""
    data = dict(body)
    try:
        if endpoint == "/v1/chat/completions":
            call = _chat_plan(validate_request(ChatCompletionRequest, data), model_id, default_max_tokens)
            return call.body if call is not None else None
        if endpoint == "/v1/completions":
            chat = _completion_chat(validate_request(CompletionRequest, data))
            call = _chat_plan(chat, model_id, default_max_tokens) if chat is not None else None
            return call.body if call is not None else None
        if endpoint == "/v1/embeddings":
            spec = embedding_model(model_id)
            texts = check_request(validate_request(EmbeddingRequest, data), spec)
            return to_workers_embeddings(texts) if len(texts) <= spec.batch else None
    except InvalidRequest:
        return None
    return None


def answer_line(endpoint: str, body: Mapping[str, Any], model_id: str, result: Any, *, default_max_tokens: int,
                new_id: Callable[[str], str], created: int) -> Answer:
    """A queued request's `result` as the OpenAI body of its line (a queueable line: see `plan_line`).
    Raises the CfaiError the live path would for a result it cannot read (or a `dimensions` too large)."""
    data = dict(body)
    if endpoint == "/v1/embeddings":
        req = validate_request(EmbeddingRequest, data)
        texts = check_request(req, embedding_model(model_id))
        vectors = parse_vectors(result, len(texts))
        counted = parse_usage(result.get("usage")) if isinstance(result, Mapping) else None
        listed = from_workers_embeddings(req, texts, vectors, model_id=model_id,
                                         prompt_tokens=counted.prompt_tokens if counted else None)
        return Answer(dict(listed), listed["usage"]["prompt_tokens"], 0)
    if endpoint == "/v1/completions":
        legacy = validate_request(CompletionRequest, data)
        chat_req = _completion_chat(legacy)
    elif endpoint == "/v1/chat/completions":
        legacy, chat_req = None, validate_request(ChatCompletionRequest, data)
    else:
        raise InvalidRequest(f"{endpoint} is not an endpoint Workers AI's async batch serves.", param="endpoint")
    call = _chat_plan(chat_req, model_id, default_max_tokens) if chat_req is not None else None
    if chat_req is None or call is None:
        raise InvalidRequest("This line cannot be answered from Workers AI's async batch.", code="not_queueable")
    completion = from_workers_chat(chat_req, call, [parse_chat_result(result)], completion_id=new_id("chatcmpl"),
                                   created=created, new_call_id=lambda: new_id("call"))
    usage = completion["usage"]
    if legacy is None:
        return Answer(dict(completion), usage["prompt_tokens"], usage["completion_tokens"])
    prompt = chat_req.messages[0].text()
    out = text_completion(choices_from_chat(completion, prompt, echo=bool(legacy.echo), base=0),
                          completion_id=new_id("cmpl"), created=created, model=completion["model"])
    out["usage"] = add_usage(None, usage)
    return Answer(dict(out), usage["prompt_tokens"], usage["completion_tokens"])


def item_error(item: QueueItem | None, model_id: str) -> CfaiError:
    """A failed (or missing) queued request as the error the live path would have raised for its call: the
    code and message Workers AI gave, mapped as a live answer's are (core.workers.envelope)."""
    if item is None:
        return map_error(502, None, "the async batch finished without an answer for this request", model=model_id)
    # No HTTP status per item: a known code decides the kind; without one it is Workers AI's failure (502).
    return map_error(500, item.code, item.message, model=model_id)
