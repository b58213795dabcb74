"""`cfai doctor`: is this installation ready? One line per check, each failure with its fix.

Imports typer and cli.common (cheap); the checks (service.doctor) inside the command.
"""

from __future__ import annotations

import typer

from cfai_cli.cli.common import JsonOption, OfflineOption, TimeoutOption, offline_requested

HELP = ("Check the configuration, the data directory's permissions, the key store and, with credentials, that "
        "the token is valid and may use Workers AI. Exit status 0 when every check passed; otherwise the first "
        "failure's: 3 configuration or credentials, 5 Workers AI unreachable, 6 timeout.")
EPILOG = "Examples:\n\n  cfai doctor\n\n  cfai doctor --json | jq '.checks[] | select(.status == \"fail\")'"


def doctor(invocation: typer.Context, json_out: JsonOption = False, offline: OfflineOption = False,
           timeout: TimeoutOption = None) -> None:
    import asyncio

    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.doctor import exit_code, run_checks

    term = Terminal(options=invocation.obj)
    checks = asyncio.run(run_checks({"offline": offline_requested(offline, invocation.obj), "timeout": timeout}))
    status = exit_code(checks)
    if json_out:
        term.json({"ok": status == 0, "exit_status": int(status), "checks": [c.to_json() for c in checks]})
    else:
        for check in checks:
            term.line(f"{check.status:<5} {check.name:<12} {check.detail}")
            if check.status == "fail" and check.fix:
                term.line(f"{'':<5} {'':<12} fix: {check.fix}")
    if status:
        raise typer.Exit(int(status))


def register(app: typer.Typer) -> None:
    app.command("doctor", help=HELP, epilog=EPILOG)(doctor)
