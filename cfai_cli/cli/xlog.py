"""The exchange log from `cfai chat`'s side: write each exchange once its answer is out (`log_exchange`, also
called per turn by the interactive chat), and find the conversation `-c/--continue` or `--cid` continues.

Imports stdlib, core, store, errors and service.cost (for the neurons `--usage` shows); imported only when
`cfai chat` runs. Writing never fails the command: the answer is already printed, so a broken, locked or
unwritable log file is one warning on stderr (store.db turns every sqlite3 error into a ConfigError).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfai_cli.cli.render import Terminal
from cfai_cli.core.history import Turn, history, said, storable, system_of
from cfai_cli.errors import CfaiError, InvalidRequest
from cfai_cli.service.context import Context
from cfai_cli.service.cost import settle
from cfai_cli.settings import Settings
from cfai_cli.store.exchanges import Exchange, ExchangeLog, Retention

# Estimated tokens of history a continued conversation sends at most (older turns are dropped, with a note):
# room for the prompt and a 4,096-token answer in the 24k context of the default model.
HISTORY_BUDGET = 16_000
Json = dict[str, Any]


def new_cid() -> str:
    """A conversation id: 12 hex digits, short enough to type after `--cid`."""
    return secrets.token_hex(6)


def exchange_log(settings: Settings) -> ExchangeLog:
    return ExchangeLog(settings.log_file)


def log_exchange(settings: Settings, term: Terminal, ctx: Context, *, cid: str, api: str, asked: str,
                 added: Sequence[Mapping[str, Any]], answer: str, tool_calls: Sequence[Mapping[str, Any]] = (),
                 started: float, attachments: Sequence[Json] = (), response_id: str | None = None) -> None:
    """Write one exchange (`added`: the messages this turn sent, in chat form, without the history; its
    system message is kept apart) with the tokens and neurons on `ctx.record`. Call it after the answer is
    printed; it never raises."""
    if not settings.log:
        return
    record = ctx.record
    settle(record, ctx.cache)  # the neurons `--usage` prints: reported, else estimated
    now = time.time()
    exchange = Exchange(
        cid=cid, ts=now, api=api, model_asked=asked, model=record.model, system=system_of(added),
        prompt=said(added), messages=[storable(m) for m in added if m.get("role") not in ("system", "developer")],
        answer=answer, tool_calls=[{"name": c.get("name"), "arguments": c.get("arguments")} for c in tool_calls],
        attachments=list(attachments), duration_ms=round((now - started) * 1000, 1),
        prompt_tokens=record.prompt_tokens if record.usage_known else None,
        completion_tokens=record.completion_tokens if record.usage_known else None,
        neurons=record.neurons, neurons_estimated=record.neurons_estimated, response_id=response_id)
    try:
        exchange_log(settings).add(exchange, Retention(settings.log_max_rows, settings.log_retention_days), now=now)
    except (CfaiError, OSError) as err:  # OSError: the data directory itself cannot be made
        message = err.message if isinstance(err, CfaiError) else f"{err.strerror or err}: {settings.log_file}"
        term.warn(f"the exchange was not logged: {message} (the answer above is complete; `cfai logs "
                  "path` shows the file, --no-log or `cfai logs off` stops logging)")


def chat_calls(tool_calls: Sequence[Mapping[str, Any]]) -> list[Json]:
    """Chat-completions tool calls as the log keeps them: name and arguments."""
    return [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in tool_calls]


def attachment_notes(attachments: Sequence[Any]) -> list[Json]:
    """What was attached, by name and kind (cli.attach.Attachment), never the bytes."""
    return [{"name": a.name, "kind": a.kind.category if a.kind is not None else "url"} for a in attachments]


@dataclass(frozen=True)
class Conversation:
    """A logged conversation to continue: its id, model, system prompt, history and last stored Response."""

    cid: str
    model: str  # what its last exchange asked for
    system: str | None
    messages: list[Json]  # chat form, system left out, oldest turns past HISTORY_BUDGET dropped
    dropped: int
    response_id: str | None  # the last exchange's stored Response (None: chat completions, or not stored)


def find_conversation(settings: Settings, cid: str | None) -> Conversation:
    """The conversation `--cid CID` names (or the one a unique prefix of 4+ characters names), or with None the
    most recent one (`-c`); an InvalidRequest (exit 4) when there is none, with the ids that start like it."""
    log = exchange_log(settings)
    param = "--continue" if cid is None else "--cid"
    if not settings.log:
        raise InvalidRequest("The exchange log is off (log = false or CFAI_LOG=0), so there is no conversation to "
                             "continue: `cfai logs on` turns it back on.", param=param, code="no_conversation")
    if cid is None:
        cid = log.latest_cid()
        if cid is None:
            raise InvalidRequest("There is no conversation to continue yet: ask something with `cfai chat` first.",
                                 param=param, code="no_conversation")
    exchanges = log.conversation(cid)
    starting = log.cids_starting(cid) if not exchanges and len(cid) >= 4 else []
    if len(starting) == 1:  # a unique prefix is enough, as with git's hashes
        cid, exchanges = starting[0], log.conversation(starting[0])
    if not exchanges:
        close = starting or (log.cids_starting(cid[:4]) if cid else [])
        hint = f" Did you mean {' or '.join(close[:3])}?" if close else " `cfai logs` lists the conversations."
        raise InvalidRequest(f"No conversation {cid!r} in the exchange log.{hint}", param=param,
                             code="unknown_conversation")
    from cfai_cli.core.tokens import estimate_tokens  # a continued conversation only: not every one-shot's import

    turns = [Turn(x.messages, x.answer, x.tool_calls) for x in exchanges]
    messages, dropped = history(turns, budget=HISTORY_BUDGET, count=estimate_tokens)
    systems = [x.system for x in exchanges if x.system is not None]
    last = exchanges[-1]
    return Conversation(cid, last.model_asked, systems[-1] if systems else None, messages, dropped,
                        last.response_id if last.api == "responses" else None)


def with_history(body: Json, conversation: Conversation | None) -> Json:
    """A chat body with the conversation's history before its own messages: the body's system message (-s)
    first if it has one, else the conversation's."""
    if conversation is None or not isinstance(body.get("messages"), list):
        return body
    own = list(body["messages"])
    first = own[0] if own else None
    if isinstance(first, Mapping) and first.get("role") in ("system", "developer"):
        head, own = [first], own[1:]
    else:
        head = [] if conversation.system is None else [{"role": "system", "content": conversation.system}]
    return {**body, "messages": [*head, *conversation.messages, *own]}


def note_continued(term: Terminal, conversation: Conversation) -> None:
    if conversation.dropped:
        term.note(f"(conversation {conversation.cid}: the {conversation.dropped} oldest turn"
                  f"{'s were' if conversation.dropped > 1 else ' was'} left out to fit the model's context)")
