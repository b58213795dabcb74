"""`cfai config show|set|unset|path`: the file is 0600, the token never shown, bad keys fail in one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

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
