"""Settings precedence (flag > environment > config file > default) and the private config file."""

from __future__ import annotations

import re
import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from cfai_cli.errors import ConfigError
from cfai_cli.settings import DEFAULT_API_BASE, load_settings, public_view, set_config_value


def test_precedence(tmp_path: Path) -> None:
    env = {"CFAI_HOME": str(tmp_path)}
    assert load_settings(environ=env).timeout == 300.0
    set_config_value(tmp_path / "config.toml", "timeout", "40")
    assert load_settings(environ=env).timeout == 40.0
    assert load_settings(environ={**env, "CFAI_TIMEOUT": "20"}).timeout == 20.0
    assert load_settings({"timeout": 10}, environ={**env, "CFAI_TIMEOUT": "20"}).timeout == 10.0
    assert load_settings({"timeout": None}, environ={**env, "CFAI_TIMEOUT": "20"}).timeout == 20.0


def test_credentials_and_api_base_from_environment(tmp_path: Path) -> None:
    env = {"CFAI_HOME": str(tmp_path), "CLOUDFLARE_ACCOUNT_ID": "acct", "CLOUDFLARE_API_TOKEN": "tok",
           "CFAI_API_BASE": "http://gateway.example/v1/"}
    settings = load_settings(environ=env)
    assert settings.require_credentials() == ("acct", "tok")
    assert settings.api_base == "http://gateway.example/v1"
    assert load_settings(environ={"CFAI_HOME": str(tmp_path)}).api_base == DEFAULT_API_BASE


def test_missing_credentials_name_the_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN"):
        load_settings(environ={"CFAI_HOME": str(tmp_path)}).require_credentials()
    offline = load_settings({"offline": True}, environ={"CFAI_HOME": str(tmp_path)})
    assert offline.require_credentials()[0] == "offline"


def test_config_file_is_private_and_keeps_other_values(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    set_config_value(path, "api_token", 'tok "quoted" \\ value')
    set_config_value(path, "account_id", "0123456789abcdef0123456789abcdef")
    set_config_value(path, "aliases.fast", "@cf/meta/llama-3.1-8b-instruct-fast")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings(environ={"CFAI_HOME": str(tmp_path)})
    assert settings.api_token == 'tok "quoted" \\ value'
    assert settings.aliases["fast"] == "@cf/meta/llama-3.1-8b-instruct-fast"
    assert settings.aliases["gpt-4o"]  # defaults stay
    set_config_value(path, "api_token", None)
    assert load_settings(environ={"CFAI_HOME": str(tmp_path)}).api_token is None


@pytest.mark.parametrize(("key", "value"), [("timeout", "soon"), ("timeout", "-1"), ("nope", "1"),
                                            ("aliases.x", "../etc"), ("allow_private_fetch", "maybe")])
def test_bad_values_are_config_errors(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        set_config_value(tmp_path / "config.toml", key, value)
    assert not (tmp_path / "config.toml").exists()


def test_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("timeout = [")
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML: .*Fix it in an editor"):
        load_settings(environ={"CFAI_HOME": str(tmp_path)})


@pytest.mark.parametrize(("text", "line"), [
    ("timeuot = 40", "timeuot: unknown field; did you mean timeout?"),
    ('timeout = "soon"', "timeout: expected a number above 0, got 'soon'."),
    ("max_retries = -1", "max_retries: expected a whole number, 0 or more, got -1."),
    ("ui = 3", "ui: expected true or false, got 3."),
    ("account_id = 7", "account_id: expected a string, got 7."),
    ('[upstreams.groq]\ntype = "openai"\nbase_url = "https://api.groq.com/openai/v1"\napi_kye = "k"',
     "[upstreams.groq] api_kye: unknown field; did you mean api_key?"),
])
def test_a_mistake_in_the_file_is_one_line_with_the_file_and_the_toml_path(tmp_path: Path, text: str,
                                                                           line: str) -> None:
    (tmp_path / "config.toml").write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"CFAI_HOME": str(tmp_path)})
    where = 4 if text.startswith("[upstreams") else 1  # the line of the mistake
    assert info.value.message.startswith(f"{tmp_path / 'config.toml'}:{where}: {line} (")
    key = line.split(":")[0].replace("[upstreams.groq] ", "upstreams.groq.")
    fix = f"remove it with `cfai config unset {key}`" if "unknown" in line else f"`cfai config set {key} VALUE`"
    assert fix in info.value.message


def test_file_values_are_read_as_loosely_as_the_environment_s(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('timeout = "40"\nui = "off"\naccount_id = " acct "\nmax_retries = 0\n')
    settings = load_settings(environ={"CFAI_HOME": str(tmp_path)})
    assert (settings.timeout, settings.ui, settings.account_id, settings.max_retries) == (40.0, False, "acct", 0)
    with pytest.raises(ConfigError, match=r"Invalid value for timeout in \$CFAI_TIMEOUT: 'inf' \(expected a number"):
        load_settings(environ={"CFAI_HOME": str(tmp_path), "CFAI_TIMEOUT": "inf"})


def test_token_never_shown(tmp_path: Path) -> None:
    settings = load_settings({"api_token": "cf-very-secret-token-1234"}, environ={"CFAI_HOME": str(tmp_path)})
    assert "cf-very-secret-token-1234" not in repr(settings)
    assert "cf-very-secret-token-1234" not in str(public_view(settings))


def test_cfai_config_set_keeps_routing_tables(tmp_path: Path) -> None:
    """Rewriting config.toml for one key keeps nested tables and lists (nothing the user stored is lost)."""
    from cfai_cli.settings import set_config_value

    path = tmp_path / "config.toml"
    original = (
        'timeout = 60\n\n[routing]\nfailover_on = ["quota", "server"]\n\n'
        '[upstreams.groq]\ntype = "openai"\nbase_url = "https://api.groq.com/openai/v1"\napi_key_env = ["A", "B"]\n\n'
        '[routes]\n"my fast" = ["@cf/meta/llama-3.1-8b-instruct-fast", "groq:llama3:8b"]\n'
    )
    path.write_text(original)
    set_config_value(path, "default_max_tokens", "100")
    set_config_value(path, "aliases.quick", "@cf/meta/llama-3.1-8b-instruct-fast")
    after = tomllib.loads(path.read_text())
    assert after == {**tomllib.loads(original), "default_max_tokens": 100,
                     "aliases": {"quick": "@cf/meta/llama-3.1-8b-instruct-fast"}}
    settings = load_settings(environ={"CFAI_HOME": str(tmp_path)})
    assert [u.name for u in settings.routing.upstreams] == ["groq"]


# ---- [vision_aliases] ----------------------------------------------------------------------------------------


def test_vision_aliases_merge_over_the_defaults(tmp_path: Path) -> None:
    from cfai_cli.core.catalog import DEFAULT_VISION_ALIASES

    (tmp_path / "config.toml").write_text('[aliases]\nhouse = "@cf/meta/llama-3.1-8b-instruct-fast"\n\n'
                                          '[vision_aliases]\n"gpt-5" = "@cf/moonshotai/kimi-k2.6"\n'
                                          'house = " @cf/google/gemma-3-12b-it "\n')
    settings = load_settings(environ={"CFAI_HOME": str(tmp_path)})
    assert settings.vision_aliases == {**DEFAULT_VISION_ALIASES, "gpt-5": "@cf/moonshotai/kimi-k2.6",
                                       "house": "@cf/google/gemma-3-12b-it"}
    assert public_view(settings)["vision_aliases"]["house"] == "@cf/google/gemma-3-12b-it"
    assert load_settings(environ={"CFAI_HOME": str(tmp_path / "none")}).vision_aliases == DEFAULT_VISION_ALIASES


@pytest.mark.parametrize(("table", "words"), [
    ('vision_aliases = "gpt-5"', "{file}: vision_aliases: must be a table"),
    ('[vision_aliases]\n"gpt-5" = 3', "{file}: [vision_aliases] gpt-5: expected a Workers AI model id"),
    ('[vision_aliases]\n"gpt-5" = "@cf/meta/../x"', "{file}: [vision_aliases] gpt-5: Invalid model id"),
    ('[vision_aliases]\n"gpt-5" = "gpt-4o"', "{file}: [vision_aliases] gpt-5: Invalid model id 'gpt-4o'"),
    ('[vision_aliases]\nnobody = "@cf/google/gemma-3-12b-it"',
     "{file}: [vision_aliases] nobody: 'nobody' is not an alias"),
])
def test_bad_vision_aliases_name_the_key_and_the_file(tmp_path: Path, table: str, words: str) -> None:
    (tmp_path / "config.toml").write_text(table + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"CFAI_HOME": str(tmp_path)})
    assert info.value.message.startswith(words.format(file=f"{tmp_path / 'config.toml'}:{table.count(chr(10)) + 1}"))
    assert "\n" not in info.value.message


def test_config_set_and_unset_vision_aliases(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    set_config_value(path, "vision_aliases.gpt-5", "@cf/meta/llama-4-scout-17b-16e-instruct")
    assert tomllib.loads(path.read_text()) == {
        "vision_aliases": {"gpt-5": "@cf/meta/llama-4-scout-17b-16e-instruct"}}
    with pytest.raises(ConfigError, match=r"vision_aliases\.mine: 'mine' is not an alias"):
        set_config_value(path, "vision_aliases.mine", "@cf/google/gemma-3-12b-it")
    set_config_value(path, "aliases.mine", "@cf/meta/llama-3.1-8b-instruct-fast")
    set_config_value(path, "vision_aliases.mine", "@cf/google/gemma-3-12b-it")
    with pytest.raises(ConfigError, match="Invalid model id"):
        set_config_value(path, "vision_aliases.mine", "../etc")
    with pytest.raises(ConfigError, match=r"unset vision_aliases\.mine first"):
        set_config_value(path, "aliases.mine", None)  # would leave the vision alias without its alias
    assert load_settings(environ={"CFAI_HOME": str(tmp_path)}).vision_aliases["mine"] == "@cf/google/gemma-3-12b-it"
    set_config_value(path, "vision_aliases.mine", None)
    set_config_value(path, "aliases.mine", None)
    assert "mine" not in load_settings(environ={"CFAI_HOME": str(tmp_path)}).vision_aliases


def test_retention_settings(tmp_path: Path) -> None:
    env = {"CFAI_HOME": str(tmp_path)}
    defaults = load_settings(environ=env)
    assert (defaults.usage_retention_days, defaults.responses_retention_days) == (90, 30)
    set_config_value(tmp_path / "config.toml", "usage_retention_days", "14")
    set_config_value(tmp_path / "config.toml", "responses_retention_days", "0")
    from_file = load_settings(environ=env)
    assert (from_file.usage_retention_days, from_file.responses_retention_days) == (14, 0)
    assert load_settings(environ={**env, "CFAI_USAGE_RETENTION_DAYS": "7"}).usage_retention_days == 7
    assert load_settings({"usage_retention_days": 3}, environ={**env, "CFAI_USAGE_RETENTION_DAYS": "7"}
                         ).usage_retention_days == 3
    with pytest.raises(ConfigError, match="usage_retention_days"):
        load_settings(environ={**env, "CFAI_USAGE_RETENTION_DAYS": "-1"})


def test_config_set_keeps_the_users_comments_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    original = ('# my proxy settings\ntimeout = 60  # seconds, for slow models\n\n[aliases]\n'
                '# the cheap one\nfast = "@cf/meta/llama-3.1-8b-instruct-fast"\n\n[routes]\n'
                'quick = ["@cf/meta/llama-3.1-8b-instruct-fast"]  # one account is enough\n')
    path.write_text(original)
    set_config_value(path, "max_retries", "5")
    set_config_value(path, "aliases.smart", "@cf/meta/llama-3.3-70b-instruct-fp8-fast")
    set_config_value(path, "vision_aliases.fast", "@cf/google/gemma-3-12b-it")
    text = path.read_text()
    for kept in ("# my proxy settings", "timeout = 60  # seconds, for slow models", "# the cheap one",
                 "quick = [\"@cf/meta/llama-3.1-8b-instruct-fast\"]  # one account is enough"):
        assert kept in text
    assert tomllib.loads(text) == {
        "timeout": 60, "max_retries": 5,
        "aliases": {"fast": "@cf/meta/llama-3.1-8b-instruct-fast", "smart": "@cf/meta/llama-3.3-70b-instruct-fp8-fast"},
        "routes": {"quick": ["@cf/meta/llama-3.1-8b-instruct-fast"]},
        "vision_aliases": {"fast": "@cf/google/gemma-3-12b-it"}}
    set_config_value(path, "aliases.smart", None)
    set_config_value(path, "max_retries", None)
    assert path.read_text().replace("\n[vision_aliases]\nfast = \"@cf/google/gemma-3-12b-it\"\n", "") == original
    assert path.stat().st_mode & 0o777 == 0o600


def test_blobs_table_and_environment(tmp_path: Path) -> None:
    env = {"CFAI_HOME": str(tmp_path)}
    assert load_settings(environ=env).blobs.url is None  # the default: images on the data directory's disk
    (tmp_path / "config.toml").write_text(
        '[blobs]\nurl = "s3://cfai-images/prod/"\nendpoint = "https://acct.r2.cloudflarestorage.com"\n'
        'region = "auto"\n')
    settings = load_settings(environ=env)
    assert (settings.blobs.url, settings.blobs.endpoint, settings.blobs.region) == (
        "s3://cfai-images/prod/", "https://acct.r2.cloudflarestorage.com", "auto")
    assert settings.origins["blobs"] == "file"
    moved = load_settings(environ={**env, "CFAI_BLOBS_URL": "s3://other-bucket"})
    assert moved.blobs.url == "s3://other-bucket" and moved.blobs.region == "auto"
    assert moved.origins["blobs"] == "environment ($CFAI_BLOBS_URL)"
    assert public_view(moved)["blobs"]["url"] == "s3://other-bucket"
    with pytest.raises(ConfigError, match=r"CFAI_BLOBS_URL.*bucket name"):
        load_settings(environ={**env, "CFAI_BLOBS_URL": "s3://No_Such"})


@pytest.mark.parametrize(("table", "where"), [('url = "https://bucket"', "[blobs] url: must start with s3://"),
                                              ('url = "s3://ok-bucket/../x"', "[blobs] url: '../x'"),
                                              ('endpoint = "r2.example"', "[blobs] endpoint"),
                                              ('bucket = "b"', "[blobs] bucket")])
def test_bad_blobs_tables_name_the_key(tmp_path: Path, table: str, where: str) -> None:
    (tmp_path / "config.toml").write_text(f"[blobs]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_settings(environ={"CFAI_HOME": str(tmp_path)})


def test_coordination_table_and_its_environment_variable(tmp_path: Path) -> None:
    assert load_settings(environ={"CFAI_HOME": str(tmp_path)}).coordination.url is None  # off by default
    (tmp_path / "config.toml").write_text('[coordination]\nurl = "redis://:s3cret@redis.internal:6380/1"\n'
                                          'on_failure = "open"\n')
    settings = load_settings(environ={"CFAI_HOME": str(tmp_path)})
    assert (settings.coordination.url, settings.coordination.on_failure) == ("redis://:s3cret@redis.internal:6380/1",
                                                                             "open")
    assert public_view(settings)["coordination"]["url"] == "redis://:****@redis.internal:6380/1"
    env = load_settings(environ={"CFAI_HOME": str(tmp_path), "CFAI_COORDINATION_URL": "rediss://other:6379"})
    assert (env.coordination.url, env.coordination.on_failure) == ("rediss://other:6379", "open")
    assert env.origins["coordination"] == "environment ($CFAI_COORDINATION_URL)"
    with pytest.raises(ConfigError, match=r"\$CFAI_COORDINATION_URL: must be a URL starting with redis://"):
        load_settings(environ={"CFAI_HOME": str(tmp_path), "CFAI_COORDINATION_URL": "http://x"})
    for line, words in (('url = "redis://"', "must name a host"),
                        ('on_failure = "maybe"', "on_failure: input should be 'closed' or 'open'")):
        (tmp_path / "config.toml").write_text(f"[coordination]\n{line}\n")
        with pytest.raises(ConfigError, match=f"config.toml:2: \\[coordination\\] .*{words}"):
            load_settings(environ={"CFAI_HOME": str(tmp_path)})


def test_store_table_and_environment(tmp_path: Path) -> None:
    env = {"CFAI_HOME": str(tmp_path)}
    default = load_settings(environ=env)
    assert default.store.url is None and default.storage == tmp_path / "cfai.db"  # the SQLite file
    (tmp_path / "config.toml").write_text('[store]\nurl = "postgresql://cfai@db.internal:5433/gateway"\n')
    settings = load_settings(environ=env)
    assert settings.storage == "postgresql://cfai@db.internal:5433/gateway" and settings.origins["store"] == "file"
    moved = load_settings(environ={**env, "CFAI_STORE_URL": "postgres://cfai:hunter22@other/gw"})
    assert moved.storage == "postgres://cfai:hunter22@other/gw"
    assert moved.origins["store"] == "environment ($CFAI_STORE_URL)"
    assert public_view(moved)["store"]["url"] == "postgres://cfai:****@other/gw"  # never the password
    with pytest.raises(ConfigError, match=r"CFAI_STORE_URL: it must be a URL starting with postgresql://") as bad:
        load_settings(environ={**env, "CFAI_STORE_URL": "mysql://cfai:hunter22@other/gw"})
    assert "hunter22" not in str(bad.value)


@pytest.mark.parametrize(("table", "where"), [('url = "sqlite:///tmp/x.db"', "[store] url: must be a URL starting"),
                                              ('url = "postgresql://host-only"', "[store] url: must name a database"),
                                              ('path = "x"', "[store] path")])
def test_bad_store_tables_name_the_key(tmp_path: Path, table: str, where: str) -> None:
    (tmp_path / "config.toml").write_text(f"[store]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_settings(environ={"CFAI_HOME": str(tmp_path)})


def test_a_shared_store_needs_shared_coordination(tmp_path: Path) -> None:
    from cfai_cli.server.app import check_shared_store

    check_shared_store(load_settings(environ={"CFAI_HOME": str(tmp_path)}))  # the SQLite file: nothing to share
    shared = load_settings(environ={"CFAI_HOME": str(tmp_path), "CFAI_STORE_URL": "postgresql://db/gw"})
    with pytest.raises(ConfigError, match=r"\[coordination\] url \(a redis:// URL\) is required"):
        check_shared_store(shared)
    down = load_settings(environ={"CFAI_HOME": str(tmp_path), "CFAI_STORE_URL": "postgresql://u:pw9@127.0.0.1:1/gw"})
    with pytest.raises(ConfigError, match=r"^cannot reach the database at 127\.0\.0\.1:1/gw: ") as caught:
        check_shared_store(replace(down, coordination=replace(down.coordination, url="redis://127.0.0.1:6379/0")))
    assert "pw9" not in str(caught.value)
