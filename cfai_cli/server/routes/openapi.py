"""GET /openapi.json: an OpenAPI 3.1 description of what this proxy serves, for fuzzers and API tools.

Imports starlette and core. Request bodies are the JSON Schemas of the very pydantic models the routes
validate with, so the description cannot drift from the behaviour; answers name the OpenAI object they
return (the official spec has the full response schemas). Built once per process.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from cfai_cli import __version__
from cfai_cli.core.admin import KeyCreate, KeyUpdate
from cfai_cli.core.openai.audio import SpeechRequest, TranscriptionRequest
from cfai_cli.core.openai.batches import CreateBatchRequest
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.openai.completions import CompletionRequest
from cfai_cli.core.openai.embeddings import EmbeddingRequest
from cfai_cli.core.openai.images import ImageEditRequest, ImageGenerationRequest
from cfai_cli.core.openai.moderations import ModerationRequest
from cfai_cli.core.openai.rerank import RerankRequest
from cfai_cli.core.openai.responses import CreateResponseRequest
from cfai_cli.core.tokens import TokenizeRequest
from cfai_cli.server.responses import JSONResponse

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}

# path -> (method, summary, request model, content type, what a 200 returns)
_OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, str, str]] = [
    ("/v1/chat/completions", "post", "Chat completion (JSON, or SSE when stream is true)", ChatCompletionRequest,
     "application/json", "CreateChatCompletionResponse"),
    ("/v1/responses", "post", "Responses API (JSON, or SSE when stream is true)", CreateResponseRequest,
     "application/json", "Response"),
    ("/v1/completions", "post", "Legacy text completion", CompletionRequest, "application/json",
     "CreateCompletionResponse"),
    ("/v1/embeddings", "post", "Embeddings", EmbeddingRequest, "application/json", "CreateEmbeddingResponse"),
    ("/v1/moderations", "post", "Moderation with a Llama Guard model", ModerationRequest, "application/json",
     "CreateModerationResponse"),
    ("/v1/images/generations", "post", "Image generation", ImageGenerationRequest, "application/json",
     "ImagesResponse"),
    ("/v1/images/edits", "post", "Image edit (multipart: image, mask)", ImageEditRequest, "multipart/form-data",
     "ImagesResponse"),
    ("/v1/audio/transcriptions", "post", "Transcription (multipart: file)", TranscriptionRequest,
     "multipart/form-data", "CreateTranscriptionResponseJson"),
    ("/v1/audio/translations", "post", "Translation (multipart: file)", TranscriptionRequest, "multipart/form-data",
     "CreateTranslationResponseJson"),
    ("/v1/audio/speech", "post", "Text to speech (audio bytes)", SpeechRequest, "application/json", "audio"),
    ("/v1/tokenize", "post", "Token counts for a model, worked out locally (cfai's own, not OpenAI's): give "
     "'input' (a text or a list) or 'messages'", TokenizeRequest, "application/json",
     "A tokenize object: total_tokens, counts, method (exact or estimate), tokenizer, note"),
    ("/v1/rerank", "post", "Rerank documents by relevance to a query (Cohere v1 / Jina shape; cfai's own, not "
     "OpenAI's)", RerankRequest, "application/json", "A rerank object: id, results (index, relevance_score, "
     "document?), meta, usage"),
    ("/v2/rerank", "post", "Rerank, Cohere v2 path (the same service; served only under /v2)", RerankRequest,
     "application/json", "A rerank object: id, results (index, relevance_score, document?), meta, usage"),
    ("/v1/models", "get", "List models", None, "", "ListModelsResponse"),
    ("/v1/models/{model}", "get", "Retrieve a model", None, "", "Model"),
    ("/v1/responses/{response_id}", "get", "Retrieve a stored response", None, "", "Response"),
    ("/v1/responses/{response_id}", "delete", "Delete a stored response", None, "", "DeleteResponse"),
    ("/v1/route-check", "get", "The chain of targets a model name resolves to, each key's state (cfai's own)",
     None, "", "A route object: model, route, targets"),
    ("/health", "get", "Health and each upstream's state (no key needed)", None, "", "Health"),
    # The Files and Batch API (docs/batch.md): files and batches are private to the key that made them.
    ("/v1/files", "post", "Upload a file (multipart: file, purpose batch or user_data, optional expires_after; a "
     "batch file is checked line by line)", None, "multipart/form-data", "OpenAIFile"),
    ("/v1/files", "get", "List the key's files, newest first", None, "", "ListFilesResponse"),
    ("/v1/files/{file_id}", "get", "Retrieve a file's metadata", None, "", "OpenAIFile"),
    ("/v1/files/{file_id}", "delete", "Delete a file", None, "", "DeleteFileResponse"),
    ("/v1/files/{file_id}/content", "get", "A file's bytes (a batch's output and error files are JSONL)", None, "",
     "The file's content"),
    ("/v1/batches", "post", "Create a batch from an uploaded batch file", CreateBatchRequest, "application/json",
     "Batch"),
    ("/v1/batches", "get", "List the key's batches, newest first", None, "", "ListBatchesResponse"),
    ("/v1/batches/{batch_id}", "get", "Retrieve a batch", None, "", "Batch"),
    ("/v1/batches/{batch_id}/cancel", "post", "Cancel a batch: no new lines start, finished lines are kept", None,
     "", "Batch"),
    # The admin API (cfai's own; admin scope; docs/admin.md).
    ("/v1/admin/keys", "post", "Create an API key; its secret is in this answer only (admin scope)", KeyCreate,
     "application/json", "An api_key object with `key`, the secret (201)"),
    ("/v1/admin/keys", "get", "List API keys, oldest first, never their secrets (admin scope)", None, "",
     "A list of api_key objects: data, first_id, last_id, has_more"),
    ("/v1/admin/keys/{key_id}", "get", "Show an API key's policy and state (admin scope)", None, "",
     "An api_key object"),
    ("/v1/admin/keys/{key_id}", "patch", "Change an API key's name and policy; null resets a field (admin scope)",
     KeyUpdate, "application/json", "The changed api_key object"),
    ("/v1/admin/keys/{key_id}", "delete", "Revoke an API key at once (admin scope)", None, "",
     "The revoked api_key object with deleted: true"),
    ("/v1/admin/keys/{key_id}/rotate", "post", "Replace an API key's secret: a new key with the same name and "
     "policy, the old one revoked at once (admin scope)", None, "",
     "The new api_key object with `key`, the secret, and rotated_from"),
    ("/v1/admin/usage", "get", "The usage log summarised, as `cfai usage --json` (admin scope)", None, "",
     "A list of summary rows: group, requests, errors, tokens, latency percentiles; since, by, has_more"),
    ("/v1/admin/usage/series", "get", "Requests, neurons and cost per hour or day and per model or key, the "
     "biggest `top` apart and the rest as (other); keys labelled by name (admin scope)", None, "",
     "A usage.series object: buckets, series (group, label, totals, points), total, groups, has_more, accounts"),
]

_LIMIT = {"name": "limit", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
# Query parameters, by path and method.
_QUERY: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("/v1/route-check", "get"): [{"name": "model", "in": "query", "required": True, "schema": {"type": "string"}}],
    ("/v1/admin/keys", "get"): [{**_LIMIT, "description": "Keys per page (default 100)"},
                                {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
                                 "description": "The last id of the previous page"}],
    ("/v1/files", "get"): [
        {"name": "purpose", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10000}},
        {"name": "order", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"}},
        {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}}],
    ("/v1/batches", "get"): [
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}}],
    ("/v1/admin/usage", "get"): [
        {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "default": "7d"},
         "description": "How far back: 30m, 12h, 7d, 2w or a date"},
        {"name": "by", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["key", "model", "day", "route", "upstream"], "default": "model"}},
        {**_LIMIT, "description": "Groups at most (default 1000)"}],
    ("/v1/admin/usage/series", "get"): [
        {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "default": "24h"},
         "description": "How far back: 30m, 12h, 7d, 2w or a date"},
        {"name": "by", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["model", "key"], "default": "model"}},
        {"name": "bucket", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["auto", "hour", "day"], "default": "auto"},
         "description": "auto: hours for up to two days, days beyond (at most 800 buckets)"},
        {"name": "top", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 8},
         "description": "Series apart; the rest are merged into one (other) series"}],
}
# The error statuses an admin operation documents besides the default (401 and 403 apply to every one).
_ADMIN_ERRORS = {"400": "Invalid body or query (param names the field)", "401": "No or an invalid key",
                 "403": "The key lacks the admin scope", "404": "No key with this id (or no longer active)",
                 "409": "The last active admin key, or a revoked key"}


def _inline(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move pydantic's `$defs` into components and point the refs there."""
    defs = schema.pop("$defs", {})
    text = repr(schema)  # cheap check before the walk
    if "#/$defs/" not in text and not defs:
        return schema, {}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                        else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(schema), {name: fix(body) for name, body in defs.items()}


@cache
def document() -> dict[str, Any]:
    components: dict[str, Any] = {"ErrorResponse": _ERROR}
    paths: dict[str, Any] = {}
    for path, method, summary, model, content_type, returns in _OPERATIONS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": f"OpenAI {returns} object" if returns[0].isupper() else returns},
                "default": {"description": "An OpenAI error body", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}},
            },
        }
        if model is not None:
            schema, defs = _inline(model.model_json_schema(mode="validation"))
            components.update(defs)
            components[model.__name__] = schema
            operation["requestBody"] = {"required": True, "content": {
                content_type: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        if "{" in path:
            operation["parameters"] = [{"name": path.split("{")[1].rstrip("}"), "in": "path", "required": True,
                                        "schema": {"type": "string"}}]
        operation["parameters"] = operation.get("parameters", []) + _QUERY.get((path, method), [])
        if not operation["parameters"]:
            del operation["parameters"]
        if (path, method) == ("/v1/admin/keys", "post"):  # creates: 201 Created
            operation["responses"] = {"201": operation["responses"].pop("200"), **operation["responses"]}
        if path.startswith("/v1/admin/"):
            operation["tags"] = ["admin"]
            for status, text in _ADMIN_ERRORS.items():
                operation["responses"][status] = {"description": text, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "cfai proxy", "version": __version__,
                 "description": "OpenAI-compatible API served from Cloudflare Workers AI. Every route is also "
                                "served without the /v1 prefix."},
        "servers": [{"url": "/"}],
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(document())


ROUTES = [("/openapi.json", openapi, ["GET"])]
