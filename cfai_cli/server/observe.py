"""Watching every request from the outside: usage log rows, metrics, and tokens for per-key TPM limits.

Imports starlette, anyio, store, service (the request record), core and server.metrics. A piece of the app's
one layer (server.front): it makes the request's record (service.record), times the request and counts its
bytes; what the request really did (the model asked for and the one that ran, who answered, the tokens the
service saw spent) is read from the record at the end, never from the bodies. Rows are queued and written in
batches by `UsageRecorder` (server.recorder), off the request path, and flushed on shutdown. With keys required,
a request that never showed a valid key leaves no row (a stranger must not grow the usage table): a 401 is
counted in `cfai_unauthenticated_total` instead.
The last line of defence for secrets is here too: error answers and in-band error events (JSON, SSE) have
every configured secret masked on their way out, whichever code path put it there (a successful answer a
route vouched for as holding no `"error"`, server.responses.vouch_error_free, is not scanned for it).
`x-cfai-overhead-ms` on each answer is the proxy's own time before the answer starts: the time since the
request arrived minus the time spent waiting on Workers AI (for a stream, until its first bytes).
`x-cfai-upstream` and `x-cfai-model` name the target that answered (see upstream.router), and so does
the usage row; `x-cfai-cache` says what the response cache did (service.cache), as the row's `cache` does.
`x-cfai-neurons` is what the request's Workers AI calls cost, and `x-cfai-neurons-source` whether Workers AI
reported it (`measured`) or cfai estimated it from published prices (`estimated`; service.cost, docs/cost.md).
A stream's headers go before its count is known: the usage row has it, and a stream asked with the request
header `x-cfai-neurons: trailer` ends with an SSE comment `: x-cfai-neurons=N measured` after its last event.
A key with a budget has its request's hold replaced by its neurons in the spend ledger (store.budgets) before
the answer's last bytes are sent, so its next request, to any worker, is judged with them counted; a request
that ends otherwise (an error, a client gone, a cancelled task) is settled on its way out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
from starlette.types import Message, Scope

from cfai_cli.core import jsonfast
from cfai_cli.core.cost import usd_of_neurons
from cfai_cli.core.redact import Scrubber
from cfai_cli.server.console import ConsoleLog, Entry
from cfai_cli.server.metrics import UNMATCHED, Metrics, RouteLabels
from cfai_cli.server.recorder import UsageRecorder
from cfai_cli.server.responses import ERROR_FREE
from cfai_cli.server.scope import request_record
from cfai_cli.service.cost import settle
from cfai_cli.service.record import RequestRecord
from cfai_cli.store.budgets import Budgets
from cfai_cli.store.keys import KeyRecord
from cfai_cli.store.limit_rule import RateLimits
from cfai_cli.store.usage import UsageRow

log = logging.getLogger("cfai.server")
_ERROR_CAPTURE = 64 * 1024  # of an error answer, enough for its code


class Watch:
    """One observed request: what its response showed while it went by (status, sizes, and an error answer's code:
    our own error bodies are small), when it arrived, its record, and whether its budget was charged. Tokens and
    models are not read from answers: the request's record has them."""

    __slots__ = ("began", "body", "bytes_in", "bytes_out", "charged", "kind", "record", "scope", "status", "text",
                 "trailer")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.began = time.perf_counter()
        self.record = request_record(scope)
        # A stream's neurons as a trailing SSE comment only when asked: it changes the stream's last bytes, which
        # hand-written clients may not expect after `data: [DONE]`.
        self.trailer = False
        for name, value in scope.get("headers", ()):  # a loop, not any() over a generator: one call less
            if name == b"x-cfai-neurons" and value.strip().lower() == b"trailer":
                self.trailer = True
                break
        self.charged = False
        self.status = 500
        self.bytes_in = 0
        self.bytes_out = 0
        self.kind = ""
        self.body = bytearray()
        self.text = False  # JSON, SSE or plain text: what a secret could be echoed into

    def start(self, message: Message) -> None:
        self.status = message["status"]
        for name, value in message.get("headers", []):
            if name == b"content-type":
                self.kind = value.decode("latin-1")
        self.text = self.kind.startswith(("application/json", "text/"))

    def chunk(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self.status >= 400 and self.kind.startswith("application/json") and len(self.body) < _ERROR_CAPTURE:
            self.body.extend(data[:_ERROR_CAPTURE])

    def finish(self) -> str | None:
        """The error code of an error answer."""
        if not self.body:
            return None
        try:
            payload = jsonfast.loads(self.body)
        except ValueError:
            return None
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            return str(code) if code is not None else error.get("type")
        return None


def neuron_headers(record: RequestRecord) -> list[tuple[bytes, bytes]]:
    """`x-cfai-neurons` and `x-cfai-neurons-source` (measured or estimated), when the request's neurons are known."""
    if record.neurons is None:
        return []
    source = b"estimated" if record.neurons_estimated else b"measured"
    return [(b"x-cfai-neurons", _figure(record.neurons)), (b"x-cfai-neurons-source", source)]


def neuron_comment(record: RequestRecord) -> bytes:
    """A stream's neurons as a trailing SSE comment line (its headers went before the count was known)."""
    source = b"estimated" if record.neurons_estimated else b"measured"
    return b": x-cfai-neurons=" + _figure(record.neurons or 0.0) + b" " + source + b"\n\n"


def _figure(neurons: float) -> bytes:
    return (b"%.6f" % neurons).rstrip(b"0").rstrip(b".") or b"0"


def route_of(template: str) -> str:
    """The usage log's route name for a route template: /v1/chat/completions -> chat/completions,
    /v1/messages -> messages, /v1/messages/count_tokens -> messages/count_tokens, /v1/models/{model:path} ->
    models; a path no route matched is `unmatched`."""
    name = _ROUTE_NAMES.get(template)
    if name is None:
        parts = [p for p in template.split("/") if p][1 if template.startswith("/v1/") else 0 :]
        if template == UNMATCHED:
            name = UNMATCHED
        elif not parts:
            name = "/"
        else:
            name = "/".join(parts[:2]) if parts[0] in ("chat", "images", "audio", "messages", "admin") else parts[0]
        if len(_ROUTE_NAMES) < 1024:  # templates are few; the bound is a backstop
            _ROUTE_NAMES[template] = name
    return name


_ROUTE_NAMES: dict[str, str] = {}


# Probes, scrapes and the browser page's static files are not API use.
_UNLOGGED = frozenset({"/health", "/metrics", "/v1/metrics", "/", "/ui", "/ui/", "/ui/app.js", "/ui/app.css"})


class Observe:
    """The watching above, as steps server.front's one layer takes for each request but the unlogged paths:
    `begin`, then `received` for each message the app reads, `starting` and `body` (and `charge_budget` when it
    says the answer ends) for each it sends, and `end` once the request is done, however it ended."""

    def __init__(self, *, recorder: UsageRecorder, metrics: Metrics, limiter: RateLimits,
                 labels: RouteLabels, ledger: Budgets, scrubber: Scrubber | None = None,
                 keys_required: bool = True, cache: Callable[[], dict[str, Any]] = dict,
                 console: ConsoleLog | None = None) -> None:
        self.console = console  # `cfai serve`'s line per request on a terminal (server.console), or None
        self.ledger = ledger  # per-key spend for budgets (store.budgets)
        self.cache = cache  # the service context's cache (the catalogue's prices, once fetched: service.cost)
        self.recorder = recorder
        self.metrics = metrics
        self.limiter = limiter
        self.labels = labels
        self.scrubber = scrubber if scrubber else None
        self.keys_required = keys_required

    def begin(self, scope: Scope) -> Watch | None:
        """The request's watch, its clock started; None for a probe, a scrape or the page's static files."""
        if scope["path"] in _UNLOGGED:
            return None
        watch = Watch(scope)
        self.metrics.started()
        return watch

    @staticmethod
    def received(watch: Watch, message: Message) -> None:
        if message["type"] == "http.request":
            watch.bytes_in += len(message.get("body", b""))

    def starting(self, watch: Watch, message: Message) -> None:
        """The answer's start (`http.response.start`): its status seen, the x-cfai-* headers added."""
        watch.start(message)
        record = watch.record
        own = max(0.0, time.perf_counter() - watch.began - record.upstream_wait)
        headers = [*message.get("headers", ()), (b"x-cfai-overhead-ms", b"%.3f" % (own * 1000))]
        if record.upstream is not None and record.model is not None:
            headers += [(b"x-cfai-upstream", record.upstream.encode()),
                        (b"x-cfai-model", record.model.encode("ascii", "replace"))]
        if record.cache is not None:
            headers.append((b"x-cfai-cache", record.cache.encode()))
        if not watch.kind.startswith("text/event-stream"):  # a stream's count comes at its end
            settle(record, self.cache())
            headers += neuron_headers(record)
        message["headers"] = headers

    def body(self, watch: Watch, message: Message) -> bool:
        """A body message (`http.response.body`) masked, given the neurons' trailer and counted; True when it is
        the answer's last, whose budget `charge_budget` then settles before the client has the whole answer
        (store.budgets)."""
        body = message.get("body", b"")
        scrubber = self.scrubber
        # A route may vouch that its (big) answer holds no `"error"` (server.responses.vouch_error_free).
        if scrubber is not None and watch.text and (watch.status >= 400 or (
                not watch.scope.get("state", {}).get(ERROR_FREE) and b'"error"' in body)):
            message["body"] = body = scrubber.data(body)
        last = not message.get("more_body", False)
        if watch.trailer and last and watch.kind.startswith("text/event-stream"):
            settle(watch.record, self.cache())
            if watch.record.neurons is not None:  # an SSE comment: clients skip it, a person can read it
                message["body"] = body = body + neuron_comment(watch.record)
        watch.chunk(body)
        return last

    async def charge_budget(self, watch: Watch) -> None:
        key = watch.scope.get("state", {}).get("cfai_key")
        if watch.charged or key is None or not key.policy.budgeted:
            return
        watch.charged = True
        record = watch.record
        settle(record, self.cache())
        if record.hold_id is not None or record.neurons:  # else nothing was held or spent: no write
            neurons, hold_id, model, calls = record.neurons, record.hold_id, record.model, record.calls
            await self.ledger.settle(hold_id, key.id, neurons, model=model, calls=calls, now=time.time())

    async def end(self, watch: Watch) -> None:
        """After the app, whatever ended the request: the metrics, a charge not yet made, the usage row."""
        scope, record = watch.scope, watch.record
        self.metrics.finished()
        settle(record, self.cache())  # a stream the client left early, an answer that never started
        key = scope.get("state", {}).get("cfai_key")
        # Only a key with a budget not yet charged (an answer that never ended) or a TPM limit has anything to
        # charge here, and a TPM key's tokens are counted at once when nothing waits for SQLite (store.hot):
        # then no shield (~5 µs) is needed.
        if key is not None and ((key.policy.budgeted and not watch.charged) or (
                key.policy.tpm is not None and not self._tokens_now(key, record))):
            with anyio.CancelScope(shield=True):  # a client gone mid-answer still spent what its calls cost
                await self.charge_budget(watch)
                await self._charge_tokens(scope, record)
        self._record(scope, record, watch, time.perf_counter() - watch.began)

    def _tokens_now(self, key: KeyRecord, record: RequestRecord) -> bool:
        """True when the request's tokens (if any) were counted at once, with no wait and no await."""
        tokens = record.prompt_tokens + record.completion_tokens
        return not tokens or self.limiter.record_tokens_now(key.id, tokens, now=time.time())

    async def _charge_tokens(self, scope: Scope, record: RequestRecord) -> None:
        """Tokens are known only at the end; TPM then refuses the key's next requests (as OpenAI does)."""
        key = scope.get("state", {}).get("cfai_key")
        tokens = record.prompt_tokens + record.completion_tokens
        if key is not None and key.policy.tpm is not None and tokens:
            await self.limiter.record_tokens(key.id, tokens, now=time.time())

    def _record(self, scope: Scope, record: RequestRecord, watch: Watch, seconds: float) -> None:
        """The usage row and metrics, from what the request's record says really happened."""
        error_code = watch.finish()
        prompt, completion = record.prompt_tokens, record.completion_tokens
        template = self.labels(scope)
        key = scope["state"].get("cfai_key")
        if self.console is not None:  # the answer has been sent: the line costs the client nothing
            self.console.add(Entry(time.time(), scope["method"], scope["path"], watch.status, seconds, record.model
                                   or record.asked, key.name if key else None, prompt, completion, record.neurons,
                                   record.neurons_estimated))
        self.metrics.observe(route=template, status=watch.status, seconds=seconds, error_code=error_code,
                             prompt_tokens=prompt, completion_tokens=completion, cache=record.cache)
        if key is None and self.keys_required:
            # Nobody to attribute it to (a wrong key, no key, an open path): counted, never a row.
            if watch.status == 401:
                self.metrics.unauthenticated()
            return
        route = route_of(template)
        self.recorder.add(UsageRow(
            ts=time.time(), key_id=key.id if key else None, route=route, model=record.asked,
            upstream_model=record.model, status=watch.status, prompt_tokens=prompt, completion_tokens=completion,
            latency_ms=round(seconds * 1000, 2), bytes_in=watch.bytes_in, bytes_out=watch.bytes_out,
            error_code=error_code, upstream=record.upstream, cache=record.cache, neurons=record.neurons,
            neurons_estimated=record.neurons_estimated,
            cost_usd=None if record.neurons is None else usd_of_neurons(record.neurons), account=record.account))
