"""A deterministic, offline fake of the Cloudflare Workers AI REST API, for `--offline` and for CI.

Imports only the standard library (never httpx, a web framework or the rest of cfai): cfai's real client talks
to it through `httpx.ASGITransport(app=create_emulator_app())` (tests) or, for `--offline`, the same requests
in bytes (upstream.inprocess), so the emulator checks cfai's translation the way Cloudflare would. Same
envelopes, both text dialects, both stream formats, same error envelope
(reference `workers-ai.md` §1, §2, §9); canned answers instead of a model.

Routes (any prefix, e.g. `http://offline.cfai.invalid/client/v4`):
  POST …/accounts/{id}/ai/run/{model}   needs `Authorization: Bearer <non-empty>` (else 401, code 10000)
  GET  …/accounts/{id}/ai/models/search `search`, `task`, `author`, `hide_experimental`, `page`, `per_page` (20)
  POST …/ai/run/{model}?queueRequest=true   the async batch: queued, running, then the responses (emulator.queue)

Answers: `[offline] cfai's built-in emulator answering <model>. No real model ran; this canned answer is the
same every time. You said: <last user text, whitespace collapsed, first 200 chars>` (tool results are quoted
instead; an image is mentioned). One token = one whitespace-separated word with the whitespace before it;
prompt tokens = words in all message texts. `max_tokens` (native default 256; qwen3 2000) cuts the answer,
reasoning spending the budget first; tool calls are never cut. Fixed `created` (2026-01-01), hashed ids.
With tools offered and the user speaking last, the model calls the tool `tool_choice` names, else the first
(native models take `tool_choice` as Cloudflare's client sends it). Triggers in the last user message:
`[emulator:text]` (native models answer a forced call in text), `[emulator:call-as-text]` (native models write
the call as JSON text), `[emulator:no-json]` (JSON mode fails: 5006 on native models, plain text on others),
`[emulator:parallel]` (every offered tool is called; chat dialect honours `parallel_tool_calls: false`),
`[emulator:call=NAME]` (call that tool, or the one named `…__NAME`, not the first) and `[emulator:args={…}]`
(the call's JSON arguments, instead of sample values); `[emulator:slow]` waits 0.1 s before each stream event
(served over a socket, a person or a tmux test can press Ctrl-C mid-answer).
Prefix cache (emulator.prefix): a request with `x-session-affinity` reports as `cached_tokens` the prompt tokens of
the leading messages it shares with the previous request of the same id (chat dialect: always in
`prompt_tokens_details`, but not in the trailing native usage event; native dialect: only when > 0).

Neurons (emulator.billing): a non-streamed text-generation answer carries `cf-ai-neurons` (its tokens at the
catalogue's `price`, $0.011 per 1,000 neurons); streams and every other task report none, as Workers AI
sometimes does, so cfai estimates those (docs/cost.md).

Fault models `@cf/cfai/fault-<kind>`:
  429, 3040   429 code 3040 "Capacity temporarily exceeded", `Retry-After: 1`
  4006, 3036  429 daily-allocation errors (no Retry-After)
  3046 408 timeout · 3006 413 too large · 5035 403 Workers Paid only · 500 500 internal error (code 3043)
  5xx-html    502 text/html Cloudflare error page
  stream-cut  stream: a few events and no `[DONE]`; non-stream: a cut-off JSON body
  stream-error   stream: a few events, then an error envelope as an event, no `[DONE]`; non-stream: 3046
  stream-garbage stream: an event whose data is not JSON; non-stream: an unrecognisable `result`
"""

from __future__ import annotations

from cfai_cli.emulator.app import create_emulator_app

__all__ = ["create_emulator_app"]
