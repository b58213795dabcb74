"""The `cfai` entry point: version, help, cheap start-up, and the one error boundary's exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cfai_cli import __version__
from cfai_cli.errors import EXIT_CODE_HELP, ExitCode
from tests.cli.conftest import Invoke

# What a command imports only when it runs: the network stack, the server, the endpoint models.
HEAVY = ("httpx", "starlette", "uvicorn", "anyio", "cfai_cli.service", "cfai_cli.upstream", "cfai_cli.server",
         "cfai_cli.core.openai", "cfai_cli.core.translate", "cfai_cli.core.config_file", "cfai_cli.settings.file",
         "prompt_toolkit")  # the interactive chat's line editor: imported only when a session starts


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"cfai {__version__}\n"
    assert __version__ == "0.1.0"


def test_help_lists_every_command_and_the_exit_statuses(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    words = " ".join(result.stdout.split())
    for command in ("chat", "models", "config", "keygen", "keys", "serve"):
        assert command in words
    assert " ".join(EXIT_CODE_HELP.split()) in words


@pytest.mark.parametrize("command", [["chat"], ["models"], ["config", "show"], ["config", "set"],
                                     ["config", "unset"], ["config", "path"], ["keygen"], ["keys", "list"],
                                     ["keys", "revoke"], ["serve"]])
def test_every_command_explains_itself_with_an_example(cli: Invoke, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout


# `cfai --help` imports every command module to list it, and neither the settings nor the model catalogue (with
# its price table) that running one loads (issue 25, 2026-12-02: 40 M of its 344 M instructions).
LISTING_UNUSED = ("cfai_cli.settings", "cfai_cli.core.catalog", "cfai_cli.core.cost")


@pytest.mark.parametrize(("argv", "banned"), [
    (["--help"], (*HEAVY, *LISTING_UNUSED, "pydantic")),
    (["--version"], (*HEAVY, "pydantic")),
    # Recent Typer (0.29 here) coerces option values with pydantic itself: there only our models are banned.
    (["chat", "--help"], HEAVY),
    (["serve", "--help"], HEAVY),
    (["config", "path"], HEAVY),
])
def test_start_up_does_not_import_the_heavy_modules(argv: list[str], banned: tuple[str, ...]) -> None:
    probe = (
        "import sys\n"
        f"sys.argv = ['cfai', *{argv!r}]\n"
        "from cfai_cli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"loaded = sorted(m for m, v in sys.modules.items() if v and m.startswith({banned!r}))\n"
        "sys.stderr.write('LOADED:' + ','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr.rsplit("LOADED:", 1)[1] == ""


def test_an_unknown_flag_is_a_usage_error(cli: Invoke) -> None:
    result = cli("chat", "--bogus", "hi")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""


def test_missing_credentials_exit_3_naming_the_variables(cli: Invoke) -> None:
    result = cli("chat", "hello")
    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfai: ")
    assert "CLOUDFLARE_ACCOUNT_ID" in lines[0] and "--offline" in lines[0]


def test_unreachable_upstream_exits_5_with_one_line(cli: Invoke) -> None:
    assert cli("config", "set", "max_retries", "0").exit_code == 0
    env = {"CLOUDFLARE_ACCOUNT_ID": "0123abcd", "CLOUDFLARE_API_TOKEN": "cf-secret-token-value",
           "CFAI_API_BASE": "http://127.0.0.1:9", "CFAI_TIMEOUT": "2"}
    result = cli("chat", "hello", env=env)
    assert result.exit_code == ExitCode.UPSTREAM
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfai: ")
    assert "cf-secret-token-value" not in result.stderr


@pytest.mark.parametrize(("fault", "status"), [
    ("4006", ExitCode.RATE_LIMITED),   # daily quota: final, not retried
    ("3046", ExitCode.TIMEOUT),
    ("5035", ExitCode.INVALID_REQUEST),
])
def test_upstream_failures_map_to_documented_statuses(cli: Invoke, fault: str, status: ExitCode) -> None:
    result = cli("chat", "--offline", "--no-stream", "-m", f"@cf/cfai/fault-{fault}", "hi")
    assert result.exit_code == status
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "OFFLINE" not in line]
    assert len(errors) == 1 and errors[0].startswith(f"cfai: Workers AI error {fault}")
    assert "Traceback" not in result.output


def test_a_broken_stream_keeps_the_partial_answer_and_exits_5(cli: Invoke) -> None:
    result = cli("chat", "--offline", "-m", "@cf/cfai/fault-stream-cut", "hi")
    assert result.exit_code == ExitCode.UPSTREAM
    assert result.stdout.endswith("\n") and result.stdout.strip()
    assert result.stderr.splitlines()[-1].startswith("cfai: ")


def test_quiet_leaves_only_data_and_errors(cli: Invoke) -> None:
    loud = cli("chat", "--offline", "hi")
    quiet = cli("-q", "chat", "--offline", "hi")
    assert "OFFLINE" in loud.stderr and quiet.stderr == ""
    assert quiet.stdout == loud.stdout and quiet.stdout.startswith("[offline]")
    failed = cli("-q", "chat", "-m", "nope", "--offline", "hi")
    assert failed.exit_code == 4 and failed.stderr.startswith("cfai: ")
    assert "OFFLINE" in cli("chat", "--offline", "hi").stderr  # -q held for its own command only
    assert "CFAI_QUIET" not in os.environ
    assert cli("chat", "--offline", "hi", env={"CFAI_QUIET": "1"}).stderr == ""  # the variable still works


def test_debug_shows_traffic_with_the_token_masked(cli: Invoke) -> None:
    env = {"CLOUDFLARE_ACCOUNT_ID": "0123abcd", "CLOUDFLARE_API_TOKEN": "cf-secret-token-123",
           "CFAI_API_BASE": "http://127.0.0.1:9", "CFAI_TIMEOUT": "3"}
    cli("config", "set", "max_retries", "0")
    result = cli("--debug", "chat", "--no-stream", "hi", env=env)
    assert result.exit_code == 5
    assert "-> POST http://127.0.0.1:9/accounts/0123abcd/ai/run/" in result.stderr
    assert "authorization: ***" in result.stderr
    assert "cf-secret-token-123" not in result.stderr + result.stdout


def test_debug_logs_each_answer_through_the_one_transport(cli: Invoke) -> None:
    """--debug wraps whichever transport was chosen (here --offline's emulator): request, body, answer, timing."""
    result = cli("--debug", "chat", "--offline", "--no-stream", "hello debug", env={"CFAI_API_TOKEN": "x"})
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    sent = [line for line in lines if line.startswith("cfai debug: -> POST ") and "/ai/run/@cf/" in line]
    answered = [line for line in lines if line.startswith("cfai debug: <- 200 ") and "/ai/run/@cf/" in line]
    assert len(sent) == 1 and len(answered) == 1
    assert "authorization: ***" in sent[0].lower() and " ms {" in answered[0]
    assert any(line.startswith("cfai debug:    body {") and "hello debug" in line for line in lines)


def test_unknown_model_ids_get_suggestions_from_the_catalogue(cli: Invoke) -> None:
    result = cli("chat", "--offline", "-m", "@cf/meta/llama-3.3-70b-instruct", "hi")
    assert result.exit_code == 4
    assert "Did you mean @cf/meta/llama-3.3-70b-instruct-fp8-fast" in result.stderr


def _loaded_after(argv: list[str], prefixes: tuple[str, ...], env: dict[str, str] | None = None) -> list[str]:
    """The modules starting with `prefixes` that `cfai ARGV` (the console script's path, stderr a pipe) has
    imported by the time it is done."""
    probe = (
        "import sys\n"
        f"sys.argv = ['cfai', *{argv!r}]\n"
        "from cfai_cli.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"loaded = sorted(m for m, v in sys.modules.items() if v and m.startswith({prefixes!r}))\n"
        "sys.stderr.write('LOADED:' + ','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, **(env or {})})
    return [m for m in done.stderr.rsplit("LOADED:", 1)[1].split(",") if m]


# A one-shot chat builds only its own command and never the server; notes on a pipe need no rich.
OTHER_COMMANDS = tuple(f"cfai_cli.cli.{name}" for name in ("embed", "image", "keys", "serve", "transcribe",
                                                           "speak", "usage", "logs", "config", "models"))
# The emulator is no Starlette app (emulator.asgi), and its answers are not drained through anyio
# (upstream.network; `import anyio` alone imports next to nothing). click and pygments would come with httpx's
# own CLI (cfai_cli/__init__.py).
SERVER = ("uvicorn", "prometheus_client", "cfai_cli.server", "rich", "click", "pygments", "starlette",
          "anyio._core", "anyio._backends", "anyio.abc")


def test_a_one_shot_offline_chat_imports_neither_the_server_nor_other_commands(tmp_path: object) -> None:
    loaded = _loaded_after(["chat", "--offline", "hi"], (*OTHER_COMMANDS, *SERVER),
                           env={"CFAI_HOME": str(tmp_path)})
    assert loaded == []


# What a one-shot chat with the default (Cloudflare-only) setup has no use for (bench/importtime.py CHAT_UNUSED).
CHAT_UNUSED = ("cfai_cli.upstream.anthropic", "cfai_cli.upstream.openai_compat", "cfai_cli.core.openai.embeddings",
               "cfai_cli.core.budgets")


def test_a_one_shot_chat_imports_no_other_upstream_client_embeddings_or_budgets(tmp_path: object) -> None:
    assert _loaded_after(["chat", "--offline", "hi"], CHAT_UNUSED, env={"CFAI_HOME": str(tmp_path)}) == []


def test_with_every_pydantic_plugin_disabled_its_loader_and_importlib_metadata_stay_out(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.entry puts a loader that finds no plugins in place of pydantic's, which imports importlib.metadata
    only to find none; a user's own list of plugin names keeps the real loader (and its entry-point scan)."""
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    home = {"CFAI_HOME": str(tmp_path)}
    for disabled in ("", "__all__"):  # "": the user set nothing, the console script disables them all
        loaded = _loaded_after(["chat", "--offline", "hi"], ("importlib.metadata",),
                               env={**home, "PYDANTIC_DISABLE_PLUGINS": disabled} if disabled else home)
        assert loaded == []
    assert "importlib.metadata" in _loaded_after(["chat", "--offline", "hi"], ("importlib.metadata",),
                                                 env={**home, "PYDANTIC_DISABLE_PLUGINS": "some_plugin"})


def test_the_stand_in_plugin_loader_hands_any_other_name_to_pydantics_own() -> None:
    """pydantic's loader is private and its pin open-ended: a pydantic that asks the stand-in for more than
    get_plugins (or passes it arguments) must get the real loader's names, not an ImportError on every command."""
    code = (
        "import os, sys\n"
        "os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
        "from cfai_cli.cli.entry import _skip_plugin_loader\n"
        "_skip_plugin_loader()\n"
        "stand_in = sys.modules['pydantic.plugin._loader']\n"
        "import pydantic\n"
        "class M(pydantic.BaseModel):\n"
        "    x: int\n"
        "assert M(x=1).x == 1\n"
        "from pydantic.plugin._loader import get_plugins\n"
        "assert tuple(get_plugins()) == () and get_plugins(1, extra=2) == ()\n"
        "assert sys.modules['pydantic.plugin._loader'] is stand_in\n"
        "from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP\n"
        "assert PYDANTIC_ENTRY_POINT_GROUP == 'pydantic'\n"
        "assert sys.modules['pydantic.plugin._loader'] is not stand_in\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "ok\n", done.stderr


def test_the_root_help_lists_what_the_full_app_lists() -> None:
    """`cfai --help` prints stand-ins for the commands (cli.app.help_listing); the words must be the real app's."""
    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "100"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    full = run("from cfai_cli.cli.app import app\napp(['--help'], prog_name='cfai')")
    lean = run("import sys\nsys.argv = ['cfai', '--help']\nfrom cfai_cli.cli.entry import main\nmain()")
    assert "keygen" in lean and "Exit statuses" in lean
    assert lean == full
    assert _loaded_after(["--help"], ("cfai_cli.cli.answer", "typer._adapters")) == []
