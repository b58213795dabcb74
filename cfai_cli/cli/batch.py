"""`cfai batch submit|list|show|cancel|download|wait`: OpenAI-style batches in the local data directory.

Imports typer and cli.common at the top; service, store and render inside the commands (cheap start-up). The
CLI is the local admin of the data directory, like `cfai keys`: it sees every batch whoever owns it. A batch
it submits runs as "no key" (no key's policy) unless --key NAME names one from the local key store, whose
scopes, models, rate limits and budget then apply. Batches run in `cfai serve`, or here with --wait /
`cfai batch wait` (cli.batch_run), with the same leased executor: one batch never runs in two processes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfai_cli.cli.common import JsonOption, OfflineOption, TimeoutOption, complete_choices, locations, start

if TYPE_CHECKING:
    from cfai_cli.service.context import Context
    from cfai_cli.settings import Settings

Json = dict[str, Any]
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")

batch_app = typer.Typer(
    name="batch", no_args_is_help=True,
    help="Run OpenAI-style batches (a JSONL file of requests) here or in `cfai serve`, and fetch their answers. "
         "The same batches the proxy's /v1/batches serves, all of them (the CLI is the local admin; "
         "docs/batch.md).",
    epilog="Examples:\n\n  cfai --offline batch submit requests.jsonl --wait -o answers.jsonl\n\n"
           "  cfai batch submit requests.jsonl --key ci --metadata job=tickets\n\n"
           "  cfai batch list\n\n  cfai batch wait batch_abc123 > answers.jsonl",
)

IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The batch's id, from `cfai batch list`.",
                                           show_default=False)]
OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", show_default=False, help="Write the answers (the output file's JSONL) here; without it they "
    "go to stdout when it is piped.")]
ErrorsOption = Annotated[Path | None, typer.Option(
    "--errors", show_default=False, help="Write the lines that failed (the error file's JSONL) here.")]


def _when(stamp: int | None) -> str:
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _key_names(settings: Settings) -> dict[str, str]:
    from cfai_cli.store.keys import KeyStore

    return {r.id: r.name for r in KeyStore(settings.storage).list()}


def _owner_label(owner: str | None, names: dict[str, str]) -> str:
    return "-" if owner is None else f"{names.get(owner, '?')} ({owner})"


def _metadata(pairs: list[str] | None) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE.", param_hint="--metadata")
        out[key.strip()] = value
    return out or None


def _endpoint(chosen: str | None, urls: dict[str, int], file: Path) -> str:
    """--endpoint, or the one url every line uses; each line's url must be the batch's endpoint."""
    from cfai_cli.errors import InvalidRequest

    if chosen is not None and chosen not in ENDPOINTS:
        raise typer.BadParameter(f"{chosen!r} is not one of {', '.join(ENDPOINTS)}.", param_hint="--endpoint")
    if chosen is None:
        if len(urls) > 1:
            raise typer.BadParameter(f"the lines of {file} use {len(urls)} urls ({', '.join(sorted(urls))}); a "
                                     "batch has one endpoint: split the file, one per endpoint.",
                                     param_hint="--endpoint")
        return next(iter(urls))
    for url, line in sorted(urls.items(), key=lambda item: item[1]):
        if url != chosen:
            raise InvalidRequest(f"{file}: line {line}: 'url' is {url}, but --endpoint is {chosen}; every line "
                                 "must use the batch's endpoint.", param="file", code="mismatched_endpoint")
    return chosen


def _as_key(settings: Settings, name: str | None) -> tuple[str | None, frozenset[str] | None]:
    """(owner, scopes) of the batch: no key (every scope, no policy), or the named key of the local store."""
    if name is None:
        return None, None
    import time

    from cfai_cli.errors import PermissionDenied
    from cfai_cli.service.admin import find_key
    from cfai_cli.store.keys import KeyStore

    record = find_key(KeyStore(settings.storage), name)
    if not record.active(time.time()):
        raise PermissionDenied(f"the key {record.id} ({record.name}) is revoked or expired; a batch cannot run "
                               "as it.", param="--key", code="invalid_api_key")
    return record.id, record.policy.scopes


@batch_app.command("submit", epilog="Examples:\n\n  cfai batch submit requests.jsonl\n\n"
                   "  cfai --offline batch submit requests.jsonl --wait -o answers.jsonl --errors failed.jsonl\n\n"
                   "  cfai batch submit embed.jsonl --endpoint /v1/embeddings --key ci --metadata job=archive")
def submit(
    invocation: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The requests, one JSON object per line: custom_id, "
                                         "method POST, url, body (docs/batch.md).", exists=True, dir_okay=False,
                                         readable=True, show_default=False)],
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", "-e", metavar="URL", show_default=False, autocompletion=complete_choices(*ENDPOINTS),
        help=f"The batch's endpoint: {', '.join(ENDPOINTS)}; inferred when every line has the same url.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(
        "--metadata", metavar="KEY=VALUE", show_default=False,
        help="A metadata pair to keep on the batch (repeat it; at most 16).")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Run the batch here until it ends, with a progress "
                                       "bar, then hand over its answers.")] = False,
    output: OutputOption = None,
    errors: ErrorsOption = None,
    key: Annotated[str | None, typer.Option("--key", metavar="ID|NAME", show_default=False,
                                            help="Run as this key of `cfai keys list`: its scopes, models, rate "
                                                 "limits and budget apply (default: no key, no limits).")] = None,
    json_out: JsonOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Check a JSONL file of requests, store it and create a batch of it; print the batch id (--json: the Batch).

    Without --wait the batch waits for `cfai serve` on this data directory or `cfai batch wait ID`. With
    --wait it runs here; Ctrl-C stops waiting and keeps what finished (resume with `cfai batch wait ID`).
    Exit status 4 when the file is refused or the batch does not complete (failed, cancelled, expired), 130
    on Ctrl-C.
    """
    from cfai_cli.cli.batch_run import deliver, prepare_and_run
    from cfai_cli.cli.outfile import check_output
    from cfai_cli.service.batch_admin import inspect_input

    if (output is not None or errors is not None) and not wait:
        raise typer.BadParameter("--output and --errors need --wait (or use `cfai batch download ID` later).",
                                 param_hint="--output")
    for path, param in ((output, "--output"), (errors, "--errors")):
        if path is not None:
            check_output(path, param=param)
    pairs = _metadata(metadata)
    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    info = inspect_input(file, settings.batch_max_lines)
    chosen = _endpoint(endpoint, info.urls, file)
    owner, scopes = _as_key(settings, key)

    async def create(ctx: Context) -> tuple[Json, str | None]:
        from cfai_cli.core.openai.batches import CreateBatchRequest
        from cfai_cli.service.batches import create_batch
        from cfai_cli.service.files import upload_file

        with file.open("rb") as source:
            upload = await upload_file(ctx, source, owner=owner, purpose="batch", filename=file.name)
        req = CreateBatchRequest(input_file_id=upload["id"], endpoint=chosen, completion_window="24h",
                                 metadata=pairs)
        batch = create_batch(ctx, req, owner=owner, scopes=scopes)
        term.note(f"{batch['id']}: {info.requests} requests to {chosen} from {file} ({upload['id']}).")
        if not wait:
            if json_out:
                term.json(batch)
            else:
                term.line(batch["id"])
            term.note(f"It runs in `cfai serve` on this data directory, or here: cfai batch wait {batch['id']}")
        return batch, owner

    batch, owner = prepare_and_run(term, settings, create, wait=wait)
    if wait:
        deliver(term, settings, batch, owner, output=output, errors=errors, json_out=json_out)


@batch_app.command("list", epilog="Examples:\n\n  cfai batch list -n 5\n\n"
                   "  cfai batch list --json | jq -r '.data[] | select(.status == \"completed\") | .id'")
def list_command(
    invocation: typer.Context,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, max=1000, help="How many, newest first.")] = 20,
    json_out: JsonOption = False,
) -> None:
    """List the batches of the data directory, newest first: status, counts, key (--json: OpenAI's list)."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.batch_admin import list_all

    term = Terminal(options=invocation.obj)
    settings = locations()
    page, owners = list_all(settings, limit=limit)
    if json_out:
        term.json(page)
        return
    if not page["data"]:
        term.note("no batches yet: `cfai batch submit FILE` makes one")
        return
    names = _key_names(settings)
    rows = []
    for b in page["data"]:
        c = b["request_counts"]
        rows.append([b["id"], b["status"], b["endpoint"], f"{c['completed']}/{c['failed']}/{c['total']}",
                     _when(b["created_at"]), _owner_label(owners[b["id"]], names)])
    term.table(["id", "status", "endpoint", "ok/failed/total", "created", "key"], rows)
    if page["has_more"]:
        term.note(f"more batches: -n {limit * 2}")


@batch_app.command("show", epilog="Example:\n\n  cfai batch show batch_abc123 --json | jq .request_counts")
def show(invocation: typer.Context, batch_id: IdArgument, json_out: JsonOption = False) -> None:
    """Show one batch: status, counts, times, files, metadata and validation errors (--json: the Batch)."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.core.openai.batches import TIMESTAMPS
    from cfai_cli.service.batch_admin import find_batch

    term = Terminal(options=invocation.obj)
    settings = locations()
    batch, owner = find_batch(settings, batch_id)
    if json_out:
        term.json(batch)
        return
    c = batch["request_counts"]
    rows = [["id", batch["id"]], ["status", batch["status"]], ["endpoint", batch["endpoint"]],
            ["key", _owner_label(owner, _key_names(settings))],
            ["requests", f"{c['total']} total, {c['completed']} succeeded, {c['failed']} failed"],
            ["created_at", _when(batch["created_at"])]]
    rows += [[name, _when(batch[name])] for name in TIMESTAMPS if name in batch]
    rows += [[name, batch.get(name) or "-"] for name in ("input_file_id", "output_file_id", "error_file_id")]
    if batch.get("usage"):
        rows.append(["tokens", f"{batch['usage']['input_tokens']} in, {batch['usage']['output_tokens']} out"])
    rows += [[f"metadata.{k}", v] for k, v in (batch.get("metadata") or {}).items()]
    rows += [["error", e["message"]] for e in (batch.get("errors") or {}).get("data", [])[:10]]
    term.table(["field", "value"], rows)


@batch_app.command("cancel", epilog="Example:\n\n  cfai batch cancel batch_abc123")
def cancel(invocation: typer.Context, batch_id: IdArgument, json_out: JsonOption = False,
           offline: OfflineOption = False) -> None:
    """Stop a batch: no new line starts, lines already sent finish; what finished is kept in its files."""
    import time

    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.batch_admin import cancel as cancel_batch
    from cfai_cli.service.batch_admin import find_batch

    term = Terminal(options=invocation.obj)
    settings = locations()
    batch, _ = cancel_batch(settings, batch_id, now=int(time.time()))
    finished = _finish_cancel(invocation, batch_id, offline)
    if finished:
        batch, _ = find_batch(settings, batch_id)
    if json_out:
        term.json(batch)
    c = batch["request_counts"]
    term.note(f"{batch_id} {batch['status']}: {c['completed'] + c['failed']} of {c['total']} lines finished and "
              "kept." + ("" if finished else " The process running it stops it once its lines in flight end."))


def _finish_cancel(invocation: typer.Context, batch_id: str, offline: bool) -> bool:
    """Write a cancelled batch's files here when no process runs it (nothing runs a batch no one holds)."""
    import asyncio

    from cfai_cli.cli.common import settings_from_flags
    from cfai_cli.errors import ConfigError
    from cfai_cli.service.batch_admin import finish_here
    from cfai_cli.service.context import open_context
    from cfai_cli.store.usage import UsageLog

    settings = settings_from_flags(offline=offline, options=invocation.obj)
    try:
        settings.require_credentials()
    except ConfigError:  # without an account a server or `cfai batch wait` finishes it later
        return False

    async def run() -> bool:
        async with open_context(settings) as ctx:
            usage = UsageLog(settings.storage)  # no line starts: no rows expected, but a sink is required
            return await finish_here(ctx, batch_id, sink=lambda row: usage.write([row]))

    return asyncio.run(run())


@batch_app.command("download", epilog="Examples:\n\n  cfai batch download batch_abc123 -o answers.jsonl\n\n"
                   "  cfai batch download batch_abc123 --errors failed.jsonl > answers.jsonl")
def download(invocation: typer.Context, batch_id: IdArgument, output: OutputOption = None,
             errors: ErrorsOption = None) -> None:
    """Save a finished batch's answers (stdout without -o) and, with --errors, the lines that failed."""
    from cfai_cli.cli.outfile import check_output
    from cfai_cli.cli.render import Terminal
    from cfai_cli.core.openai.batches import FINAL
    from cfai_cli.errors import InvalidRequest
    from cfai_cli.service.batch_admin import file_bytes, find_batch

    for path, param in ((output, "--output"), (errors, "--errors")):
        if path is not None:
            check_output(path, param=param)
    term = Terminal(options=invocation.obj)
    settings = locations()
    batch, owner = find_batch(settings, batch_id)
    c = batch["request_counts"]
    if batch["status"] not in FINAL:
        raise InvalidRequest(f"batch {batch_id} is {batch['status']} ({c['completed'] + c['failed']} of {c['total']} "
                             f"lines done): its files are written when it ends. Run it to the end here with "
                             f"`cfai batch wait {batch_id}`.", code="batch_not_finished")
    if batch["status"] == "failed":
        reasons = (batch.get("errors") or {}).get("data") or [{"message": "no reason recorded"}]
        raise InvalidRequest(f"batch {batch_id} failed before it ran, so it has no answers: {reasons[0]['message']}",
                             code="batch_failed")
    for name, path in (("output_file_id", output), ("error_file_id", errors)):
        data = b"" if batch.get(name) is None else file_bytes(settings, batch[name], owner=owner)
        if path is not None:
            try:
                path.write_bytes(data)
            except OSError as exc:
                raise InvalidRequest(f"cannot write {path}: {exc.strerror or exc}") from None
        elif name == "output_file_id" and data:
            term.write_bytes(data)
    term.note(f"{batch_id} {batch['status']}: {c['completed']} lines succeeded, {c['failed']} failed.")


@batch_app.command("wait", epilog="Examples:\n\n  cfai batch wait batch_abc123 -o answers.jsonl\n\n"
                   "  cfai batch wait batch_abc123 --json | jq .request_counts")
def wait(
    invocation: typer.Context,
    batch_id: IdArgument,
    output: OutputOption = None,
    errors: ErrorsOption = None,
    json_out: JsonOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Run or resume a batch here until it ends (a progress bar on a terminal), then hand over its answers.

    A batch that `cfai serve` is running is only watched (it takes over if the server stops). Ctrl-C stops
    waiting; the batch keeps its finished lines and this command resumes it.
    """
    from cfai_cli.cli.batch_run import deliver, prepare_and_run
    from cfai_cli.cli.outfile import check_output
    from cfai_cli.service.batch_admin import find_batch

    for path, param in ((output, "--output"), (errors, "--errors")):
        if path is not None:
            check_output(path, param=param)
    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    found = find_batch(settings, batch_id)

    async def existing(ctx: Context) -> tuple[Json, str | None]:
        return found

    batch, owner = prepare_and_run(term, settings, existing, wait=True)
    deliver(term, settings, batch, owner, output=output, errors=errors, json_out=json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(batch_app)
