"""GET /v1/admin/usage/series (the browser page's usage chart) and `last_used_at` in the key list: the figures
SQLite sums per bucket and per model or key equal sums worked out by hand from the rows written, the answer is
bounded (top series + "(other)", a cap on buckets), keys are labelled by name, and only admin keys may read it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.service import admin
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyStore
from cfai_cli.store.usage import UsageLog, UsageRow
from tests.server.conftest import offline
from tests.server.test_admin import CHAT, admin_key, bearer, error_of, make_key

pytestmark = pytest.mark.anyio

DAY = 86_400
NOW = 1_789_948_800.0 + 13 * 3600 + 1800  # 2026-09-21 13:30 UTC


def row(ts: float, *, key: str | None, model: str, neurons: float | None, status: int = 200,
        estimated: bool = False, tokens: int = 10) -> UsageRow:
    return UsageRow(ts=ts, key_id=key, route="chat/completions", model="alias", upstream_model=model, status=status,
                    prompt_tokens=tokens, completion_tokens=2 * tokens, latency_ms=5.0, bytes_in=1, bytes_out=1,
                    error_code=None, upstream="cloudflare", neurons=neurons, neurons_estimated=estimated,
                    cost_usd=None if neurons is None else neurons * 0.011 / 1000, account="cloudflare")


def by_group(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["group"]: s for s in body["series"]}


@pytest.fixture
def where(settings: Settings, database: Path | str) -> Path | str:
    """The usage log and keys in the settings' cfai.db, or in a PostgreSQL database (the same SQL on both)."""
    return settings.database if isinstance(database, Path) else database


def test_sums_per_bucket_and_series_equal_the_rows(where: Path | str) -> None:
    store = KeyStore(where)
    _, alice = store.create("alice")
    _, bob = store.create("bob")
    day0 = NOW - 13 * 3600 - 1800
    rows = [
        row(day0 + 60, key=alice.id, model="@cf/a", neurons=10.0),  # bucket 00:00
        row(day0 + 3000, key=alice.id, model="@cf/a", neurons=2.5, estimated=True),  # bucket 00:00
        row(day0 + 3600, key=bob.id, model="@cf/b", neurons=30.0),  # bucket 01:00 exactly
        row(day0 + 5 * 3600 + 1, key=bob.id, model="@cf/a", neurons=None, status=500),  # no Workers AI cost
        row(day0 + 13 * 3600 + 10, key=None, model="@cf/b", neurons=1.0),  # the last, partial bucket
        row(day0 - 10, key=alice.id, model="@cf/a", neurons=1000.0),  # before the period: left out
        row(NOW + 10, key=alice.id, model="@cf/a", neurons=1000.0),  # after `now`: left out
    ]
    UsageLog(where).write(rows)
    since = "2026-09-21T00:00:00"  # day0, as a date
    body = admin.usage_series(UsageLog(where), store, since=since, by="model", bucket="hour", now=NOW)
    assert body["bucket"] == "hour" and body["bucket_seconds"] == 3600 and body["start"] == day0
    assert body["buckets"] == [day0 + h * 3600 for h in range(14)]  # 00:00 .. 13:00
    series = by_group(body)
    assert list(series) == ["@cf/b", "@cf/a"]  # most neurons first, not most requests
    a, b = series["@cf/a"], series["@cf/b"]
    assert (a["requests"], a["errors"], a["neurons"], a["estimated_neurons"]) == (3, 1, 12.5, 2.5)
    assert a["cost_usd"] == pytest.approx(12.5 * 0.011 / 1000)
    assert a["prompt_tokens"] == 30 and a["completion_tokens"] == 60 and a["label"] == "@cf/a"
    assert a["points"]["requests"] == [2, 0, 0, 0, 0, 1] + [0] * 8
    assert a["points"]["neurons"] == [12.5] + [0.0] * 13
    assert b["points"]["requests"] == [0, 1] + [0] * 11 + [1] and b["neurons"] == 31.0
    assert b["points"]["neurons"] == [0.0, 30.0] + [0.0] * 11 + [1.0]
    assert body["total"]["requests"] == 5 and body["total"]["neurons"] == 43.5 and body["groups"] == 2
    assert body["has_more"] is False
    # Day buckets over the same rows: one bucket (00:00 UTC) holds them all.
    days = admin.usage_series(UsageLog(where), store, since=since, by="model", bucket="day", now=NOW)
    assert days["buckets"] == [day0] and by_group(days)["@cf/a"]["points"]["neurons"] == [12.5]
    # By key: names, not ids; the requests without a key apart.
    keys = by_group(admin.usage_series(UsageLog(where), store, since=since, by="key", now=NOW))
    assert {g: s["label"] for g, s in keys.items()} == {alice.id: "alice", bob.id: "bob", "(no key)": "(no key)"}
    assert keys[alice.id]["neurons"] == 12.5 and keys[bob.id]["requests"] == 2 and keys[bob.id]["errors"] == 1


def test_the_answer_is_bounded_and_the_rest_is_other(where: Path | str) -> None:
    store = KeyStore(where)
    now = time.time()
    # 20 models, model i spending i + 1 neurons in each of i + 1 requests.
    rows = [row(now - 60 - j, key=None, model=f"@cf/m{i:02}", neurons=i + 1.0) for i in range(20) for j in range(i + 1)]
    UsageLog(where).write(rows)
    body = admin.usage_series(UsageLog(where), store, since="1h", top=3, now=now)
    groups = [s["group"] for s in body["series"]]
    assert groups == ["@cf/m19", "@cf/m18", "@cf/m17", "(other)"]
    other = body["series"][-1]
    assert other["merged"] == 17 and other["label"] == "other (17)" and other["other"] is True
    assert not any(s["other"] for s in body["series"][:-1])
    assert other["requests"] == sum(i + 1 for i in range(17))
    assert other["neurons"] == sum((i + 1) ** 2 for i in range(17))
    assert sum(other["points"]["requests"]) == other["requests"]
    assert body["groups"] == 20 and body["has_more"] is True
    assert sum(s["requests"] for s in body["series"]) == body["total"]["requests"] == len(rows)
    assert len(body["buckets"]) == 2  # an hour back from now crosses one hour boundary at most
    with pytest.raises(Exception) as many:
        admin.usage_series(UsageLog(where), store, since="40d", bucket="hour", now=now)
    assert getattr(many.value, "param", None) == "since"
    month = admin.usage_series(UsageLog(where), store, since="30d", bucket="hour", now=now)
    assert len(month["buckets"]) in (720, 721)
    assert admin.usage_series(UsageLog(where), store, since="30d", now=now)["bucket"] == "day"
    assert admin.usage_series(UsageLog(where), store, since="48h", now=now)["bucket"] == "hour"


def test_a_model_a_client_named_other_is_not_the_merged_series(where: Path | str) -> None:
    now = time.time()
    UsageLog(where).write([row(now - 5, key=None, model="(other)", neurons=9.0),
                                       *(row(now - 5, key=None, model=f"@cf/m{i}", neurons=1.0) for i in range(3))])
    body = admin.usage_series(UsageLog(where), KeyStore(where), since="1h", top=1, now=now)
    named, merged = body["series"]
    assert (named["group"], named["other"], named["neurons"], named["merged"]) == ("(other)", False, 9.0, 1)
    assert (merged["other"], merged["neurons"], merged["merged"], merged["label"]) == (True, 3.0, 3, "other (3)")


def test_revoked_and_namesake_keys_are_labelled_by_id(settings: Settings) -> None:
    store = KeyStore(settings.database)
    _, gone = store.create("ci")
    _, twin1 = store.create("laptop")
    _, twin2 = store.create("laptop")
    store.revoke(gone.id)
    now = time.time()
    UsageLog(settings.database).write([row(now - 5, key=k, model="@cf/a", neurons=1.0)
                                       for k in (gone.id, twin1.id, twin2.id, "key_unknown")])
    series = by_group(admin.usage_series(UsageLog(settings.database), store, since="1h", by="key", now=now))
    assert series[gone.id]["label"] == gone.id and series[gone.id]["name"] == "ci"
    assert series[twin1.id]["label"] == f"laptop ({twin1.id})" and series[twin2.id]["name"] == "laptop"
    assert series["key_unknown"]["label"] == "key_unknown" and series["key_unknown"]["name"] is None


async def test_over_http_the_series_match_the_summary_of_real_calls(settings: Settings) -> None:
    root, root_id = admin_key(settings)
    one, one_id = make_key(settings)
    two, two_id = make_key(settings)
    KeyStore(settings.database).update(two_id, name="two")
    async with offline(settings) as client:
        for key, model, times in ((one, "gpt-4o-mini", 2), (two, "@cf/zai-org/glm-4.7-flash", 3),
                                  (one, "@cf/zai-org/glm-4.7-flash", 1)):
            for _ in range(times):
                answer = await client.post("/v1/chat/completions", headers=bearer(key), json={**CHAT, "model": model})
                assert answer.status_code == 200, answer.text
        summary = (await client.get("/v1/admin/usage?since=1h&by=model", headers=bearer(root))).json()
        answer = await client.get("/v1/admin/usage/series?since=1h&by=model", headers=bearer(root))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        keyed = (await client.get("/admin/usage/series?since=24h&by=key&top=2", headers=bearer(root))).json()
        listed = (await client.get("/v1/admin/keys", headers=bearer(root))).json()["data"]
        assert error_of(await client.get("/v1/admin/usage/series?by=route", headers=bearer(root)), 400)["param"] == \
            "by"
        assert error_of(await client.get("/v1/admin/usage/series?top=51", headers=bearer(root)), 400)["param"] == "top"
        assert error_of(await client.get("/v1/admin/usage/series?bucket=week", headers=bearer(root)),
                        400)["param"] == "bucket"
        assert error_of(await client.get("/v1/admin/usage/series?since=soon", headers=bearer(root)),
                        400)["param"] == "since"
        assert error_of(await client.get("/v1/admin/usage/series", headers=bearer(one)), 403)["code"] == \
            "insufficient_scope"
        assert (await client.get("/v1/admin/usage/series")).status_code == 401
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert body["object"] == "usage.series" and body["bucket"] == "hour" and body["accounts"]
    summed = {row["group"]: row for row in summary["data"]}
    models = {g: s for g, s in by_group(body).items() if g != "(none)"}  # (none): the admin calls, made later
    assert set(models) == set(summed) - {"(none)"} == {"@cf/zai-org/glm-4.7-flash",
                                                        "@cf/meta/llama-3.1-8b-instruct-fast"}
    for group, series in models.items():  # the chart and `cfai usage --json` agree
        assert series["requests"] == summed[group]["requests"]
        assert series["neurons"] == pytest.approx(summed[group]["neurons"]) and series["neurons"] > 0
        assert series["cost_usd"] == pytest.approx(summed[group]["cost_usd"])
        assert sum(series["points"]["requests"]) == series["requests"]
        assert sum(series["points"]["neurons"]) == pytest.approx(series["neurons"])
    assert by_group(body)["@cf/zai-org/glm-4.7-flash"]["requests"] == 4
    keys = by_group(keyed)
    assert keys[two_id]["label"] == "two" and keys[two_id]["requests"] == 3 and keys[one_id]["requests"] == 3
    assert keys["(other)"]["merged"] == 1 and keys["(other)"]["requests"] >= 2  # the admin key's own calls
    seen = {k["id"]: k["last_used_at"] for k in listed}
    assert seen[root_id] is not None and time.time() - 60 < seen[one_id] <= time.time()
    series_doc = paths["/v1/admin/usage/series"]["get"]
    assert {p["name"] for p in series_doc["parameters"]} == {"since", "by", "bucket", "top"}
    assert series_doc["tags"] == ["admin"]
