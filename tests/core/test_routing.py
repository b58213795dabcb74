"""The pure routing core: config parsing, failure kinds, rest times and candidate order."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from cfai_cli.core.config_file import parse_routing
from cfai_cli.core.cooldowns import (
    MAX_RESTING,
    Cooldowns,
    Rest,
    failure_kind,
    rest_for,
    rests_target,
    seconds_to_utc_midnight,
    shared_until,
)
from cfai_cli.core.routing import Credential, Target, with_secrets
from cfai_cli.errors import (
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthError,
    UpstreamError,
    UpstreamStreamError,
    UpstreamTimeout,
)

GOOD = """
[routing]
cooldown_seconds = 12
failover_on = ["quota", "server"]

[upstreams.b2]
type = "cloudflare"
account_id = "feed0000feed0000feed0000feed0000"
api_token_env = ["B2_TOKEN", "B2_TOKEN_2"]
timeout = 20

[upstreams.groq]
type = "openai"
base_url = "https://api.groq.com/openai/v1/"
api_key_env = "GROQ_API_KEY"
cooldown_seconds = 5
failover_on = ["rate_limit"]

[upstreams.local]
type = "openai"
base_url = "http://127.0.0.1:11434/v1"

[routes]
fast = ["@cf/meta/llama-3.1-8b-instruct-fast", "groq:llama-3.1-8b-instant", "local:llama3:8b"]
"""


def parse(text: str) -> Any:
    return parse_routing(tomllib.loads(text), source="config.toml")


def test_a_full_config_parses() -> None:
    config = parse(GOOD)
    assert [(u.name, u.kind) for u in config.upstreams] == [("b2", "cloudflare"), ("groq", "openai"),
                                                            ("local", "openai")]
    b2, groq, local = config.upstreams
    assert b2.credentials == (Credential(env="B2_TOKEN"), Credential(env="B2_TOKEN_2")) and b2.timeout == 20
    assert groq.base_url == "https://api.groq.com/openai/v1"
    assert local.credentials == (Credential(),)  # keyless: a local server
    assert config.routes["fast"] == ("@cf/meta/llama-3.1-8b-instruct-fast", Target("groq", "llama-3.1-8b-instant"),
                                     Target("local", "llama3:8b"))  # a colon in the model name is kept
    assert config.policy("b2") == (frozenset({"quota", "server"}), 12.0)
    assert config.policy("groq") == (frozenset({"rate_limit"}), 5.0)


def test_secrets_come_from_the_environment_and_never_show() -> None:
    config = with_secrets(parse(GOOD), {"B2_TOKEN": "tok-1", "GROQ_API_KEY": "gsk-secret"})
    b2 = config.upstreams[0]
    assert [c.value for c in b2.credentials] == ["tok-1", None]
    assert "tok-1" not in repr(config) and "gsk-secret" not in repr(config)
    shown = config.public()
    assert shown["upstreams"]["b2"]["keys"] == ["$B2_TOKEN", "$B2_TOKEN_2 (not set)"]
    assert "gsk-secret" not in repr(shown)
    assert shown["routes"]["fast"][1] == "groq:llama-3.1-8b-instant"


def test_a_name_resolves_to_its_route_else_to_a_workers_ai_id() -> None:
    config = parse(GOOD)
    aliases = {"gpt-4o-mini": "@cf/meta/llama-3.1-8b-instruct-fast"}
    assert config.route_name(" fast ") == "fast" and config.route_name("gpt-4o-mini") is None
    assert config.resolve(" fast ", aliases) == "fast"
    assert config.resolve("gpt-4o-mini", aliases) == "@cf/meta/llama-3.1-8b-instruct-fast"
    with pytest.raises(InvalidRequest):
        config.resolve("no such model!", aliases)


def test_nothing_configured_means_no_routes() -> None:
    config = parse("")
    assert config.upstreams == () and dict(config.routes) == {}
    assert config.policy("cloudflare")[1] == 30.0


@pytest.mark.parametrize("text, message", [
    ('[upstreams.x]\ntype = "azure"', '[upstreams.x] type: must be "cloudflare", "openai" (an OpenAI-compatible '
                                     'API), "anthropic" or "gemini"'),
    ('[upstreams.x]\nbase_url = "http://x"', '[upstreams.x] type: must be "cloudflare", "openai"'),
    ('[upstreams.claude]\ntype = "anthropic"', '[upstreams.claude]: give api_key_env (the variable holding the key'),
    ('[upstreams.claude]\ntype = "anthropic"\napi_key_env = "A"\nanthropic_version = "latest"',
     '[upstreams.claude] anthropic_version: must be an Anthropic API version date, e.g. "2023-06-01"'),
    ('[upstreams.claude]\ntype = "anthropic"\napi_key = "k"\nbase_url = "api.anthropic.com"',
     "[upstreams.claude] base_url: must be an http(s) URL"),
    ('[upstreams.claude]\ntype = "anthropic"\napi_key = "k"\napi_version = "2023-06-01"',
     "[upstreams.claude] api_version: unknown field; did you mean anthropic_version?"),
    ('[upstreams.claude]\ntype = "anthropic"\napi_key = "k"\naccount_id = "x"', "[upstreams.claude] account_id: "
                                                                               "unknown field"),
    ('[upstreams.g]\ntype = "gemini"\napi_key_env = "1BAD"',
     "[upstreams.g] api_key_env: '1BAD' is not an environment variable name"),
    ('[upstreams.cloudflare]\ntype = "openai"\nbase_url = "http://x"', "[upstreams.cloudflare]: upstream names"),
    ('[upstreams.x]\ntype = "cloudflare"\napi_token = "t"', "[upstreams.x] account_id: missing; it must be the 32"),
    ('[upstreams.x]\ntype = "cloudflare"\naccount_id = "a/b"\napi_token = "t"',
     "[upstreams.x] account_id: must be the 32-character id"),
    ('[upstreams.x]\ntype = "cloudflare"\naccount_id = "feed0000feed0000feed0000feed0000"',
     "[upstreams.x]: give api_token_env"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "ftp://x"', "[upstreams.x] base_url: must be an http(s) URL"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "http://x"\napi_key_env = "1BAD"',
     "[upstreams.x] api_key_env: '1BAD' is not an environment variable name"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "http://x"\ntimeout = 0',
     "[upstreams.x] timeout: must be more than 0"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "http://x"\nfailover_on = ["soon"]',
     "[upstreams.x] failover_on: unknown failure kind 'soon'"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "http://x"\nsecret = 1',
     "[upstreams.x] secret: unknown field; known: "),
    ('[upstreams.groq]\ntype = "openai"\nbase_url = "http://x"\napi_kye = "k"',
     "[upstreams.groq] api_kye: unknown field; did you mean api_key?"),
    ('[routes]\nfast = ["groq:m"]', "[routes] fast: 'groq:m' names the upstream 'groq', which is not defined"),
    ('[routes]\nfast = ["llama"]', "[routes] fast: 'llama' is neither a Workers AI id"),
    ('[routes]\nfast = []', "[routes] fast: must be a non-empty string"),
    ('[routes]\n" " = ["@cf/a/b"]', '[routes] " ": a route needs a name'),
    ('[routing]\ncooldown_seconds = -1', "[routing] cooldown_seconds: must be a number of seconds"),
    ('[routing]\ncooldown = 3', "[routing] cooldown: unknown field; did you mean cooldown_seconds?"),
    ('upstreams = 3', "upstreams: must hold one table per upstream"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "http://x"\nextra_fields = "provider"',
     "[upstreams.x] extra_fields: must be a list of request field names"),
    ('[upstreams.x]\ntype = "openai"\nbase_url = "http://x"\nextra_fields = ["a b"]',
     "[upstreams.x] extra_fields: must be a list"),
    ('[upstreams.x]\ntype = "cloudflare"\naccount_id = "feed0000feed0000feed0000feed0000"\napi_token = "t"\n'
     'extra_fields = ["p"]', "[upstreams.x] extra_fields: unknown field"),
    ('[rotues]\nfast = ["@cf/a/b"]', "rotues: unknown field; did you mean routes?"),
])
def test_mistakes_are_one_line_config_errors_that_say_where(text: str, message: str) -> None:
    """The file, then the TOML path, then the mistake: `config.toml: [upstreams.groq] api_kye: unknown field…`."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.message.startswith(f"config.toml: {message}"), caught.value.message
    assert "\n" not in caught.value.message and "pydantic" not in caught.value.message


@pytest.mark.parametrize("error, kind", [
    (QuotaExceeded("q", upstream_code=4006), "quota"),
    (RateLimited("c", upstream_code="3040"), "capacity"),
    (RateLimited("c", upstream_code=3040), "capacity"),
    (RateLimited("r", upstream_code=3001), "rate_limit"),
    (RateLimited("o", upstream_code="overloaded_error"), "capacity"),  # Anthropic's 529
    (UpstreamTimeout("t"), "timeout"),
    (UpstreamAuthError("a"), "auth"),
    (UpstreamStreamError("s"), "server"),
    (UpstreamError("5xx"), "server"),
    (ModelNotFound("m"), "not_found"),
    (PermissionDenied("p"), "forbidden"),
    (InvalidRequest("bad"), None),
    (RequestTooLarge("big"), None),
])
def test_failure_kinds(error: Exception, kind: str | None) -> None:
    assert failure_kind(error) == kind


def test_anthropic_and_gemini_fill_their_defaults() -> None:
    config = parse('[upstreams.claude]\ntype = "anthropic"\napi_key_env = "ANTHROPIC_API_KEY"\n'
                   '[upstreams.claude2]\ntype = "anthropic"\napi_key = "k"\nbase_url = "https://gw.test/anthropic/"\n'
                   'anthropic_version = "2024-01-01"\nextra_fields = ["top_k"]\n'
                   '[upstreams.gem]\ntype = "gemini"\n[upstreams.gem2]\ntype = "gemini"\napi_key_env = "MY_GEMINI"\n'
                   'base_url = "https://gw.test/gemini"\n'
                   '[routes]\nsmart = ["@cf/meta/llama-3.3-70b-instruct-fp8-fast", "claude:claude-sonnet-4-5"]')
    claude, claude2, gem, gem2 = (config.upstream(n) for n in ("claude", "claude2", "gem", "gem2"))
    assert claude is not None and claude2 is not None and gem is not None and gem2 is not None
    assert (claude.kind, claude.base_url, claude.anthropic_version, claude.credentials) == (
        "anthropic", "https://api.anthropic.com", "2023-06-01", (Credential(env="ANTHROPIC_API_KEY"),))
    assert (claude2.base_url, claude2.anthropic_version, claude2.extra_fields) == (
        "https://gw.test/anthropic", "2024-01-01", {"top_k"})
    assert (gem.kind, gem.base_url, gem.credentials) == (
        "openai", "https://generativelanguage.googleapis.com/v1beta/openai", (Credential(env="GEMINI_API_KEY"),))
    assert (gem2.base_url, gem2.credentials) == ("https://gw.test/gemini", (Credential(env="MY_GEMINI"),))
    assert config.routes["smart"][1] == Target("claude", "claude-sonnet-4-5")
    shown = config.public()["upstreams"]
    assert shown["claude"] == {"type": "anthropic", "keys": ["$ANTHROPIC_API_KEY (not set)"],
                               "base_url": "https://api.anthropic.com", "anthropic_version": "2023-06-01"}


def test_extra_fields_are_per_openai_upstream_and_shown() -> None:
    config = parse('[upstreams.or]\ntype = "openai"\nbase_url = "https://openrouter.ai/api/v1"\n'
                   'extra_fields = ["provider", "transforms"]\n[upstreams.plain]\ntype = "openai"\n'
                   'base_url = "http://localhost:11434/v1"')
    assert config.upstream("or").extra_fields == {"provider", "transforms"}  # type: ignore[union-attr]
    assert config.upstream("plain").extra_fields == frozenset()  # type: ignore[union-attr]
    assert config.public()["upstreams"]["or"]["extra_fields"] == ["provider", "transforms"]


def test_a_missing_model_the_client_named_rests_nothing_a_routes_does() -> None:
    assert not rests_target("not_found", named_by_client=True)
    assert rests_target("not_found", named_by_client=False)
    for kind in ("server", "timeout", "rate_limit", "quota", "capacity", "auth", "forbidden"):
        assert rests_target(kind, named_by_client=True) and rests_target(kind, named_by_client=False)


def test_rest_times() -> None:
    now = 1_799_971_200.0 + 3600  # 01:00 UTC (1_799_971_200 is a midnight)
    assert rest_for("rate_limit", RateLimited("x", retry_after=90), 30, now) == 90
    assert rest_for("server", UpstreamError("x"), 30, now) == 30
    assert rest_for("quota", QuotaExceeded("x", upstream_code=4006), 30, now) == seconds_to_utc_midnight(now) == 82800
    assert rest_for("quota", QuotaExceeded("x", upstream_code="insufficient_quota"), 30, now) == 30


def test_cooldowns_order_candidates() -> None:
    cool = Cooldowns()
    pairs = [("a", "m1"), ("b", "m1"), ("c", "m2")]
    assert cool.order(pairs, 100) == [0, 1, 2]
    cool.failed("a", "m1", "server", UpstreamError("x"), cooldown=30, now=100)
    assert cool.order(pairs, 110) == [1, 2]
    assert cool.order([("a", "m2")], 110) == [0]  # a model failure rests that model only
    cool.failed("b", "m9", "quota", QuotaExceeded("x"), cooldown=50, now=100)
    assert cool.order(pairs, 110) == [2]  # a quota rests every model of the lane
    cool.failed("c", "m2", "server", UpstreamError("x"), cooldown=5, now=100)
    assert cool.order(pairs, 104) == [2]  # all resting: only the one that is back soonest
    assert cool.order(pairs, 131) == [0, 2]
    cool.succeeded("b", "m1")
    assert cool.state("b").served == 1 and cool.state("b").failures == 1
    assert cool.order(pairs, 131) == [0, 1, 2]  # an answer ends the lane's rest


def test_a_failure_says_what_it_rests_for_the_other_replicas() -> None:
    cool = Cooldowns()
    assert cool.failed("a", "m", "server", UpstreamError("x"), cooldown=30, now=100) == ("m", 130)
    assert cool.failed("a", "m", "server", UpstreamError("x"), cooldown=5, now=110) == ("m", 130)  # the longer
    assert cool.failed("a", "n", "quota", QuotaExceeded("x"), cooldown=50, now=100) == ("*", 150)
    assert cool.failed("b", "m", "server", UpstreamError("x"), cooldown=0, now=100) is None
    assert cool.failed("b", "junk", "server", UpstreamError("x"), cooldown=30, now=100, known=False) is None


def test_shared_rests_order_instead_of_the_local_table() -> None:
    cool = Cooldowns()
    cool.failed("a", "m", "server", UpstreamError("x"), cooldown=30, now=100)  # this process's own rest
    pairs = [("a", "m"), ("b", "m"), ("c", "m")]
    shared = {("b", "*"): Rest(200.0, "quota"), ("c", "m"): Rest(105.0), ("c", "other"): Rest(900.0)}
    assert shared_until(shared, "b", "m", 110) == 200 and shared_until(shared, "c", "m", 110) is None
    assert cool.order(pairs, 101, shared) == [0]  # the replicas' view: b's lane and c's model rest, a does not
    assert cool.order(pairs, 110, shared) == [0, 2]
    assert cool.order(pairs, 110) == [1, 2]  # Redis unreadable: the local table
    assert cool.order([("b", "m"), ("c", "m")], 101, shared) == [1]  # all resting: the soonest back


def test_zero_cooldown_means_no_rest() -> None:
    cool = Cooldowns()
    cool.failed("a", "m", "server", UpstreamError("x"), cooldown=0, now=100)
    assert cool.order([("a", "m"), ("b", "m")], 100) == [0, 1]
    assert cool.state("a").last_kind == "server"


def test_only_known_models_rest() -> None:
    """(A missing model the client named is not even noted: see the router and `rests_target`.)"""
    cool = Cooldowns()
    cool.failed("a", "@cf/x/garbage-1", "server", UpstreamError("x"), cooldown=30, now=100, known=False)
    cool.failed("a", "@cf/x/garbage-2", "not_found", ModelNotFound("no such model"), cooldown=30, now=100,
                known=False)
    assert cool.state("a").resting == {}
    assert cool.state("a").failures == 2  # still counted against the lane
    cool.failed("a", "@cf/meta/in-a-route", "not_found", ModelNotFound("gone"), cooldown=30, now=100)
    assert cool.state("a").resting == {"@cf/meta/in-a-route": 130}  # a configured model gone missing rests
    del cool.state("a").resting["@cf/meta/in-a-route"]
    cool.failed("a", "@cf/x/garbage-3", "quota", QuotaExceeded("x"), cooldown=30, now=100, known=False)
    assert cool.state("a").resting == {"*": 130}  # a lane-wide failure rests the lane, whatever the model
    cool.failed("b", "m", "server", UpstreamError("x"), cooldown=30, now=100)
    assert cool.state("b").resting == {"m": 130}


def test_the_resting_table_is_capped() -> None:
    cool = Cooldowns()
    for i in range(MAX_RESTING + 50):
        cool.failed("a", f"m{i}", "server", UpstreamError("x"), cooldown=30 + i, now=100)
    resting = cool.state("a").resting
    assert len(resting) == MAX_RESTING
    assert "m0" not in resting and f"m{MAX_RESTING + 49}" in resting  # the rests ending soonest gave way
