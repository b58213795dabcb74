"""Running a batch in the `cfai` process (`cfai batch submit --wait`, `cfai batch wait`) and handing over its files.

Imports the standard library and typer at the top; server (the usage recorder and account meter, as `cfai serve`
uses them), service and render inside the functions. The batch runs with the proxy's own executor
(service.batch_admin.run_here): each line leaves a usage row and counts against the batch key's limits and
budget as it would in `cfai serve`. Ctrl-C stops waiting, not the batch: finished lines stay, the lease is
released, and `cfai batch wait ID` (or a server on this data directory) carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from cfai_cli.errors import ExitCode, InvalidRequest

if TYPE_CHECKING:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.context import Context
    from cfai_cli.settings import Settings

Json = dict[str, Any]
Prepare = Callable[["Context"], Awaitable[tuple[Json, str | None]]]


def _interrupted(term: Terminal, settings: Settings, batch_id: str) -> NoReturn:
    from cfai_cli.service.batch_admin import find_batch

    batch, _ = find_batch(settings, batch_id)
    counts = batch["request_counts"]
    term.error(f"stopped waiting; {batch_id} is {batch['status']} with {counts['completed'] + counts['failed']} of "
               f"{counts['total']} lines done (kept). Resume with `cfai batch wait {batch_id}`.")
    raise typer.Exit(int(ExitCode.INTERRUPTED))


def prepare_and_run(term: Terminal, settings: Settings, prepare: Prepare, *, wait: bool) -> tuple[Json, str | None]:
    """`prepare` finds or creates the batch (its object and owner); with `wait`, run it here to the end."""
    import asyncio

    from cfai_cli.server.meter import AccountMeter
    from cfai_cli.server.recorder import UsageRecorder
    from cfai_cli.service.batch_admin import run_here
    from cfai_cli.service.context import open_context
    from cfai_cli.store.usage import UsageLog

    started: list[str] = []

    async def main() -> tuple[Json, str | None]:
        recorder = UsageRecorder(UsageLog(settings.storage))
        # The account meter lets the router respect each account's daily neuron cap, as in `cfai serve`.
        async with open_context(settings, meter=AccountMeter(UsageLog(settings.storage), recorder)) as ctx:
            batch, owner = await prepare(ctx)
            if not wait or batch["status"] in ("completed", "failed", "expired", "cancelled"):
                return batch, owner
            started.append(batch["id"])
            recorder.start()
            try:
                with term.batch_progress(batch["id"]) as update:
                    def progress(seen: Json) -> None:
                        counts = seen["request_counts"]
                        update(seen["status"], counts["completed"], counts["failed"], counts["total"])

                    return await run_here(ctx, batch["id"], owner=owner, sink=recorder.add,
                                          progress=progress), owner
            finally:
                await recorder.stop()  # every line's usage row is written, also after Ctrl-C

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        if not started:
            raise
        _interrupted(term, settings, started[0])


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InvalidRequest(f"cannot write {path}: {exc.strerror or exc}", param="--output") from None


def deliver(term: Terminal, settings: Settings, batch: Json, owner: str | None, *, output: Path | None,
            errors: Path | None, json_out: bool) -> None:
    """A final batch's files: to --output/--errors, the output JSONL on stdout when piped (the Batch object with
    --json), a summary on a terminal. A batch that did not complete (failed, cancelled, expired) ends with its
    reason and exit status 4, after what finished has been written."""
    from cfai_cli.service.batch_admin import file_bytes

    batch_id, counts = batch["id"], batch["request_counts"]

    def content(name: str) -> bytes:
        file_id = batch.get(name)
        return b"" if file_id is None else file_bytes(settings, file_id, owner=owner)

    if output is not None:
        _write(output, content("output_file_id"))
    if errors is not None:
        _write(errors, content("error_file_id"))
    if json_out:
        term.json(batch)
    elif output is None and not term.out_tty:
        data = content("output_file_id")
        if data:
            term.write_bytes(data)
    status = batch["status"]
    done = f"{counts['completed']} of {counts['total']} lines succeeded, {counts['failed']} failed"
    if status == "failed":
        reasons = (batch.get("errors") or {}).get("data") or [{"message": "no reason recorded"}]
        more = f" (and {len(reasons) - 1} more problems: `cfai batch show {batch_id}`)" if len(reasons) > 1 else ""
        raise InvalidRequest(f"batch {batch_id} failed: {reasons[0]['message']}{more}", code="batch_failed")
    where = (f"the answers are in {output}" if output is not None
             else f"save the answers with `cfai batch download {batch_id} -o FILE`" if term.out_tty or json_out
             else "the answers are on stdout")
    term.note(f"{batch_id} {status}: {done}; {where}.")
    if counts["failed"] and errors is None:
        term.warn(f"{counts['failed']} lines failed: `cfai batch download {batch_id} --errors FILE` saves their "
                  "errors.")
    if status == "expired":
        raise InvalidRequest(f"batch {batch_id} expired before every line ran ({done}).", code="batch_expired")
    if status == "cancelled":
        raise InvalidRequest(f"batch {batch_id} was cancelled ({done}).", code="batch_cancelled")
