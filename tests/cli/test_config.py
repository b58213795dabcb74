"""`cfai config show|set|unset|path`: the file is 0600, the token never shown, bad keys fail in one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke

TOKEN = "cf-0123456789-secret-token-abcdef"
ACCOUNT = "0123456789abcdef0123456789abcdef"


def test_path_is_under_cfai_home(cli: Invoke, cfai_home: Path) -> None:
    result = cli("config", "path")
    assert result.exit_code == 0
    assert result.stdout == f"{cfai_home / 'config.toml'}\n"
    assert cli("config", "path", "--data").stdout == f"{cfai_home}\n"


def test_set_writes_a_private_file_and_show_reads_it(cli: Invoke, cfai_home: Path) -> None:
    assert cli("config", "set", "account_id", ACCOUNT).exit_code == 0
    assert cli("config", "set", "timeout", "42").exit_code == 0
    path = cfai_home / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    view = json.loads(cli("config", "show", "--json").stdout)
    assert view["account_id"] == ACCOUNT
    assert view["timeout"] == 42.0
    assert view["config_file"] == str(path)


def test_the_token_is_masked_everywhere(cli: Invoke, cfai_home: Path) -> None:
    result = cli("config", "set", "api_token", TOKEN)
    assert result.exit_code == 0
    assert TOKEN not in result.output
    assert TOKEN in (cfai_home / "config.toml").read_text()
    for args in (["config", "show"], ["config", "show", "--json"]):
        shown = cli(*args)
        assert shown.exit_code == 0
        assert TOKEN not in shown.output
    assert json.loads(cli("config", "show", "--json").stdout)["api_token"] == "cf-0…ef"


def test_a_value_can_come_from_stdin(cli: Invoke) -> None:
    assert cli("config", "set", "api_token", "-", input=TOKEN + "\n").exit_code == 0
    assert json.loads(cli("config", "show", "--json").stdout)["api_token"] == "cf-0…ef"


def test_show_piped_is_tab_separated(cli: Invoke) -> None:
    cli("config", "set", "aliases.fast", "@cf/meta/llama-3.1-8b-instruct-fast")
    rows = {key: rest for key, *rest in (line.split("\t") for line in cli("config", "show").stdout.splitlines())}
    assert rows["aliases.fast"] == ["@cf/meta/llama-3.1-8b-instruct-fast", "file"]
    assert rows["api_token"] == ["", "default"]


def test_unset_restores_the_default(cli: Invoke) -> None:
    cli("config", "set", "default_model", "@cf/meta/llama-3.1-8b-instruct-fast")
    assert cli("config", "unset", "default_model").exit_code == 0
    view = json.loads(cli("config", "show", "--json").stdout)
    assert view["default_model"] == "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


def test_unknown_keys_and_bad_values_exit_3_in_one_line(cli: Invoke) -> None:
    for args in (["set", "colour", "blue"], ["set", "timeout", "soon"], ["unset", "colour"],
                 ["set", "aliases.x", "../../etc"]):
        result = cli("config", *args)
        assert result.exit_code == 3, args
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("cfai: ")


def test_a_broken_config_file_is_reported_not_a_traceback(cli: Invoke, cfai_home: Path) -> None:
    (cfai_home / "config.toml").write_text("timeout = [unclosed\n")
    result = cli("config", "show")
    assert result.exit_code == 3
    assert "timeout\t300.0\tdefault" in result.stdout  # what applies without the file is still shown
    assert result.stderr.startswith(f"cfai: {cfai_home / 'config.toml'}: not valid TOML")
    assert "Fix it in an editor" in result.stderr and len(result.stderr.splitlines()) == 1
    assert cli("config", "path").exit_code == 0  # still tells you where to fix it


MISSPELT = """\
# my cfai settings
timeout = 30     # seconds

[upstreams.groq]
type = "openai"
base_url = "https://api.groq.com/openai/v1"
api_kye = "k"
"""


def test_a_misspelt_key_names_its_line_and_cfai_config_repairs_it(cli: Invoke, cfai_home: Path) -> None:
    path = cfai_home / "config.toml"
    path.write_text(MISSPELT)
    failed = cli("--offline", "models")
    assert failed.exit_code == 3 and failed.stdout == ""
    assert failed.stderr == (f"cfai: {path}:7: [upstreams.groq] api_kye: unknown field; did you mean api_key? "
                             "(remove it with `cfai config unset upstreams.groq.api_kye` or edit the file)\n")
    shown = cli("config", "show")  # still shows what applies, then says what is wrong
    assert shown.exit_code == 3 and "timeout\t300.0\tdefault" in shown.stdout
    assert "api_kye" in shown.stderr and len(shown.stderr.splitlines()) == 1
    assert cli("config", "unset", "upstreams.groq.api_kye").exit_code == 0
    assert path.read_text() == MISSPELT.replace('api_kye = "k"\n', "")  # comments and layout kept
    assert cli("--offline", "models").exit_code == 0
    assert cli("config", "get", "timeout").stdout == "30.0\n"


def test_a_bad_value_is_repaired_with_set(cli: Invoke, cfai_home: Path) -> None:
    path = cfai_home / "config.toml"
    path.write_text('# mine\ntimeout = "soon"   # keep me\n')
    failed = cli("--offline", "models")
    assert failed.exit_code == 3
    assert f"{path}:2: timeout: expected a number above 0, got 'soon'." in failed.stderr
    assert "`cfai config set timeout VALUE`" in failed.stderr
    assert cli("config", "set", "timeout", "45").exit_code == 0
    assert path.read_text() == "# mine\ntimeout = 45.0   # keep me\n"
    assert cli("config", "get", "timeout").stdout == "45.0\n"


def test_set_checks_shapes_and_leaves_the_file_alone(cli: Invoke, cfai_home: Path) -> None:
    path = cfai_home / "config.toml"
    path.write_text("# mine\n")
    for key, value, words in (("account_id", "abc123", "32-character id"), ("api_base", "api.example.com",
                              "must be an http(s) URL"), ("timeout", "0", "a number above 0"),
                              ("max_retries", "two", "a whole number"), ("timout", "3", "Did you mean timeout?")):
        result = cli("config", "set", key, value)
        assert result.exit_code == 3, key
        assert words in result.stderr and len(result.stderr.splitlines()) == 1
    assert path.read_text() == "# mine\n"
    assert cli("config", "set", "account_id", ACCOUNT.upper()).exit_code == 0


def test_get_prints_the_value_in_effect(cli: Invoke) -> None:
    assert cli("config", "get", "default_model").stdout == "@cf/meta/llama-3.3-70b-instruct-fp8-fast\n"
    assert cli("config", "get", "timeout", env={"CFAI_TIMEOUT": "12"}).stdout == "12.0\n"
    assert cli("config", "get", "aliases.gpt-4o").stdout.startswith("@cf/")
    assert cli("config", "get", "cache.enabled").stdout == "false\n"
    assert json.loads(cli("config", "get", "cache", "--json").stdout)["enabled"] is False
    cli("config", "set", "api_token", TOKEN)
    assert cli("config", "get", "api_token").stdout == "cf-0…ef\n"
    unknown = cli("config", "get", "timout")
    assert unknown.exit_code == 3 and "did you mean timeout?" in unknown.stderr


def test_show_says_where_each_value_comes_from(cli: Invoke) -> None:
    cli("config", "set", "timeout", "40")
    cli("config", "set", "aliases.fast", "@cf/meta/llama-3.1-8b-instruct-fast")
    view = json.loads(cli("config", "show", "--json", env={"CFAI_MODEL": "@cf/qwen/qwq-32b"}).stdout)
    sources = view["sources"]
    assert (sources["timeout"], sources["default_model"], sources["max_retries"]) == (
        "file", "environment ($CFAI_MODEL)", "default")
    assert (sources["aliases"], sources["cache"], sources["config_dir"]) == ("file", "default",
                                                                           "environment ($CFAI_HOME)")
    assert view["default_model"] == "@cf/qwen/qwq-32b"
    assert json.loads(cli("--offline", "config", "show", "--json").stdout)["sources"]["offline"] == "flag"
    offline = json.loads(cli("config", "show", "--json", env={"CFAI_OFFLINE": "1"}).stdout)
    assert offline["offline"] is True and offline["sources"]["offline"] == "environment ($CFAI_OFFLINE)"


def test_set_api_token_asks_without_echo_on_a_terminal(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    with monkeypatch.context() as patch:
        patch.setattr("cfai_cli.cli.render._isatty", lambda stream: stream is sys.stdin)
        result = cli("config", "set", "api_token", input=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("api_token:") and TOKEN not in result.output  # the prompt, not the token
    assert json.loads(cli("config", "show", "--json").stdout)["api_token"] == "cf-0…ef"


def test_set_without_a_value_reads_a_pipe(cli: Invoke) -> None:
    assert cli("config", "set", "api_token", input=TOKEN + "\n").exit_code == 0
    assert json.loads(cli("config", "show", "--json").stdout)["api_token"] == "cf-0…ef"
    empty = cli("config", "set", "api_token", input="")
    assert empty.exit_code == 2 and "no value given" in empty.stderr


def test_offline_everywhere(cli: Invoke) -> None:
    """`cfai --offline` and CFAI_OFFLINE=1 make commands without their own --offline flag use the emulator."""
    for args, env in ((("--offline",), {}), ((), {"CFAI_OFFLINE": "1"})):
        result = cli(*args, "embed", "hello", env=env)
        assert result.exit_code == 0, result.output
        assert "OFFLINE" in result.stderr
    assert cli("embed", "hello", env={"CFAI_OFFLINE": "0"}).exit_code == 3  # no credentials, not offline
    bad = cli("embed", "hello", env={"CFAI_OFFLINE": "maybe"})
    assert bad.exit_code == 3 and "$CFAI_OFFLINE" in bad.stderr
