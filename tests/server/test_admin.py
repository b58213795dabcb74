"""The admin API (/v1/admin/keys, /v1/admin/usage) through HTTP against the in-process app: every operation, the
admin scope, rotation and revocation taking effect at once, the last-admin rule, validation and secrecy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from cfai_cli.core.admin import Scope
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageLog
from tests.openai_schema import validate
from tests.server.conftest import offline

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}]}


def make_key(settings: Settings, **policy: Any) -> tuple[str, str]:
    key, record = KeyStore(settings.database).create("t", KeyPolicy(**policy))
    return key, record.id


def admin_key(settings: Settings) -> tuple[str, str]:
    return make_key(settings, scopes=frozenset(SCOPES))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    validate(body, "ErrorResponse")
    error: dict[str, Any] = body["error"]
    return error


def test_the_request_scopes_are_the_store_scopes() -> None:
    assert set(get_args(Scope)) == {*SCOPES, "all"}


async def test_create_show_list_and_use_a_key(settings: Settings) -> None:
    root, root_id = admin_key(settings)
    async with offline(settings) as client:
        made = await client.post("/v1/admin/keys", headers=bearer(root), json={
            "name": "ci", "scopes": ["chat", "models"], "models": ["gpt-4o-mini", "@cf/meta/*"],
            "rpm": 60, "rpd": 1000, "tpm": 5000, "expires_in": "30d", "cache": True})
        assert made.status_code == 201, made.text
        created = made.json()
        secret = created["key"]
        assert secret.startswith("sk-proj-") and created["id"].startswith("key_") and created["name"] == "ci"
        assert created["scopes"] == ["chat", "models"] and created["models"] == ["gpt-4o-mini", "@cf/meta/*"]
        assert (created["rpm"], created["rpd"], created["tpm"], created["cache"]) == (60, 1000, 5000, True)
        assert 30 * 86400 - 5 <= created["expires_at"] - time.time() <= 30 * 86400
        # The new key works, within its policy.
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))).status_code == 200
        assert (await client.post("/v1/embeddings", json={"model": "bge-m3", "input": "x"},
                                  headers=bearer(secret))).status_code == 403
        shown = await client.get(f"/v1/admin/keys/{created['id']}", headers=bearer(root))
        assert shown.status_code == 200
        assert shown.json() == {k: v for k, v in created.items() if k != "key"}
        listed = await client.get("/v1/admin/keys", headers=bearer(root))
        assert listed.status_code == 200
        assert {k["id"] for k in listed.json()["data"]} == {root_id, created["id"]}
        assert listed.json()["has_more"] is False
        # Defaults: keygen's (every scope but admin, any model, no limits).
        plain = (await client.post("/admin/keys", headers=bearer(root), json={})).json()
        assert plain["name"] == "default" and "admin" not in plain["scopes"] and plain["models"] == []
        everything = (await client.post("/v1/admin/keys", headers=bearer(root), json={"scopes": ["all"]})).json()
        assert everything["scopes"] == sorted(SCOPES)
    stored = KeyStore(settings.database).verify(secret)
    assert stored is not None and stored.policy.cache and stored.policy.rpm == 60


async def test_secrets_are_never_listed_or_stored(settings: Settings) -> None:
    root, _ = admin_key(settings)
    async with offline(settings) as client:
        secret = (await client.post("/v1/admin/keys", headers=bearer(root), json={"name": "x"})).json()["key"]
        listed = (await client.get("/v1/admin/keys", headers=bearer(root))).text
        usage = (await client.get("/v1/admin/usage?by=route", headers=bearer(root))).text
    for text in (listed, usage):
        assert secret not in text and root not in text and secret[8:] not in text
        assert KeyStore(settings.database).verify(secret) is not None
    import hashlib
    assert hashlib.sha256(secret.encode()).hexdigest() not in listed
    stored = b"".join(p.read_bytes() for p in Path(settings.data_dir).rglob("*") if p.is_file())
    assert secret.encode() not in stored and secret[8:].encode() not in stored


async def test_pages_are_bounded(settings: Settings) -> None:
    root, root_id = admin_key(settings)
    made = {root_id} | {make_key(settings)[1] for _ in range(4)}
    async with offline(settings) as client:
        ids = [k["id"] for k in (await client.get("/v1/admin/keys", headers=bearer(root))).json()["data"]]
        assert set(ids) == made
        first = (await client.get("/v1/admin/keys?limit=2", headers=bearer(root))).json()
        assert [k["id"] for k in first["data"]] == ids[:2] and first["has_more"] is True
        second = (await client.get(f"/v1/admin/keys?limit=2&after={first['last_id']}", headers=bearer(root))).json()
        assert [k["id"] for k in second["data"]] == ids[2:4] and second["has_more"] is True
        last = (await client.get(f"/v1/admin/keys?limit=2&after={second['last_id']}", headers=bearer(root))).json()
        assert [k["id"] for k in last["data"]] == ids[4:] and last["has_more"] is False
        for query, param in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                             ("after=key_nope", "after")):
            assert error_of(await client.get(f"/v1/admin/keys?{query}", headers=bearer(root)), 400)["param"] == param


async def test_update_changes_the_policy_at_once(settings: Settings) -> None:
    root, _ = admin_key(settings)
    key, key_id = make_key(settings)
    async with offline(settings) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))).status_code == 200
        changed = await client.patch(f"/v1/admin/keys/{key_id}", headers=bearer(root),
                                     json={"name": "renamed", "models": ["@cf/baai/*"], "rpm": 5})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["name"], body["models"], body["rpm"], body["rpd"]) == ("renamed", ["@cf/baai/*"], 5, None)
        assert body["scopes"] == sorted(KeyPolicy().scopes)  # not sent, so kept
        refused = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))  # the same secret
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
        reset = (await client.patch(f"/v1/admin/keys/{key_id}", headers=bearer(root),
                                    json={"models": None, "rpm": None})).json()
        assert reset["models"] == [] and reset["rpm"] is None and reset["name"] == "renamed"
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))).status_code == 200
        expired = (await client.patch(f"/v1/admin/keys/{key_id}", headers=bearer(root),
                                      json={"expires_at": int(time.time()) - 1})).json()
        assert expired["active"] is False
        assert (await client.get("/v1/models", headers=bearer(key))).status_code == 401


async def test_rotation_stops_the_old_secret_at_once(settings: Settings) -> None:
    root, _ = admin_key(settings)
    old, old_id = make_key(settings, rpm=7)
    async with offline(settings) as client:
        assert (await client.get("/v1/models", headers=bearer(old))).status_code == 200  # cached as valid
        rotated = await client.post(f"/v1/admin/keys/{old_id}/rotate", headers=bearer(root))
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert body["rotated_from"] == old_id and body["id"] != old_id and body["rpm"] == 7 and body["name"] == "t"
        assert error_of(await client.get("/v1/models", headers=bearer(old)), 401)["code"] == "invalid_api_key"
        assert (await client.get("/v1/models", headers=bearer(body["key"]))).status_code == 200
        listed = (await client.get("/v1/admin/keys", headers=bearer(root))).json()["data"]
        assert next(k for k in listed if k["id"] == old_id)["revoked_at"] is not None
        again = await client.post(f"/v1/admin/keys/{old_id}/rotate", headers=bearer(root))
        assert error_of(again, 404)["code"] == "key_not_active"


async def test_revoke(settings: Settings) -> None:
    root, _ = admin_key(settings)
    key, key_id = make_key(settings)
    async with offline(settings) as client:
        assert (await client.get("/v1/models", headers=bearer(key))).status_code == 200
        gone = await client.delete(f"/v1/admin/keys/{key_id}", headers=bearer(root))
        assert gone.status_code == 200 and gone.json()["deleted"] is True and gone.json()["revoked_at"] is not None
        assert (await client.get("/v1/models", headers=bearer(key))).status_code == 401
        assert error_of(await client.delete(f"/v1/admin/keys/{key_id}", headers=bearer(root)), 404)["code"] == \
            "key_not_active"
        changed = await client.patch(f"/v1/admin/keys/{key_id}", headers=bearer(root), json={"rpm": 3})
        assert error_of(changed, 409)["code"] == "key_revoked"


async def test_the_last_admin_key_cannot_be_revoked_or_demoted(settings: Settings) -> None:
    root, root_id = admin_key(settings)
    async with offline(settings) as client:
        refused = error_of(await client.delete(f"/v1/admin/keys/{root_id}", headers=bearer(root)), 409)
        assert refused["code"] == "last_admin_key" and "last active key with the admin scope" in refused["message"]
        demote = await client.patch(f"/v1/admin/keys/{root_id}", headers=bearer(root), json={"scopes": ["chat"]})
        assert error_of(demote, 409)["code"] == "last_admin_key"
        expire = await client.patch(f"/v1/admin/keys/{root_id}", headers=bearer(root), json={"expires_at": 1})
        assert error_of(expire, 409)["code"] == "last_admin_key"
        assert (await client.get("/v1/admin/keys", headers=bearer(root))).status_code == 200  # still admin
        # A second admin key: now either one may go, but not both, even at the same moment.
        second = (await client.post("/v1/admin/keys", headers=bearer(root), json={"scopes": ["admin"]})).json()
        answers = await asyncio.gather(client.delete(f"/v1/admin/keys/{root_id}", headers=bearer(second["key"])),
                                       client.delete(f"/v1/admin/keys/{second['id']}", headers=bearer(root)))
        assert sorted(a.status_code for a in answers) == [200, 409]
    active = [r for r in KeyStore(settings.database).list() if r.active(time.time())]
    assert [("admin" in r.policy.scopes) for r in active] == [True]


async def test_without_auth_the_last_admin_rule_does_not_apply(settings: Settings) -> None:
    """With --no-auth (loopback only) nobody needs a key to administer, so nobody can be locked out."""
    _, root_id = admin_key(settings)
    app = create_app(settings.as_offline(), no_auth=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        assert (await client.delete(f"/v1/admin/keys/{root_id}")).status_code == 200


async def test_admin_scope_and_key_required(settings: Settings) -> None:
    plain, plain_id = make_key(settings)
    async with offline(settings) as client:
        for method, path in (("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"),
                             ("GET", f"/v1/admin/keys/{plain_id}"), ("PATCH", f"/v1/admin/keys/{plain_id}"),
                             ("DELETE", f"/v1/admin/keys/{plain_id}"),
                             ("POST", f"/v1/admin/keys/{plain_id}/rotate"), ("GET", "/v1/admin/usage"),
                             ("GET", "/admin/usage")):
            denied = await client.request(method, path, headers=bearer(plain), json={})
            assert error_of(denied, 403)["code"] == "insufficient_scope", (method, path)
            assert error_of(await client.request(method, path, json={}), 401)["code"] == "missing_api_key"
    assert KeyStore(settings.database).verify(plain) is not None  # nothing happened to it


async def test_validation_errors_name_the_field(settings: Settings) -> None:
    root, root_id = admin_key(settings)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"scopes": ["chat", "root"]}, "scopes[1]"), ({"scopes": []}, "scopes"), ({"rpm": 0}, "rpm"),
        ({"rpm": "60"}, "rpm"), ({"models": "gpt-4o"}, "models"), ({"models": ["a,b"]}, "models[0]"),
        ({"expires_in": "soon"}, "expires_in"), ({"name": ""}, "name"), ({"cache": "yes"}, "cache"),
        ({"expires_in": "1d", "expires_at": 5}, "expires_at"), ({"scope": ["chat"]}, "scope"),
        ({"models": ["m"] * 101}, "models"),
    ]
    async with offline(settings) as client:
        for body, param in cases:
            error = error_of(await client.post("/v1/admin/keys", headers=bearer(root), json=body), 400)
            assert error["param"] == param, (body, error)
        for body, param in [({"name": None}, "name"), ({"tpm": -1}, "tpm"), ({"sk": "sk-proj-secret"}, "sk")]:
            answer = await client.patch(f"/v1/admin/keys/{root_id}", headers=bearer(root), json=body)
            error = error_of(answer, 400)
            assert error["param"] == param and "sk-proj-secret" not in answer.text
        unknown = await client.get("/v1/admin/keys/key_0000000000000000", headers=bearer(root))
        assert error_of(unknown, 404)["code"] == "key_not_found"
        for method in ("PATCH", "DELETE"):
            missing = await client.request(method, "/v1/admin/keys/key_0000000000000000", headers=bearer(root),
                                            json={"rpm": 1})
            assert error_of(missing, 404)["code"] == "key_not_found"
        assert error_of(await client.post("/v1/admin/keys/nope/rotate", headers=bearer(root)), 404)["param"] == "id"
        not_json = await client.post("/v1/admin/keys", headers={**bearer(root), "content-type": "text/plain"},
                                     content=b"{}")
        assert not_json.status_code == 415
    assert len(KeyStore(settings.database).list()) == 1  # no bad request made a key


async def test_usage_summary_and_admin_requests_are_logged(settings: Settings) -> None:
    root, root_id = admin_key(settings)
    user, user_id = make_key(settings)
    async with offline(settings) as client:
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(user))).status_code == 200
        made = await client.post("/v1/admin/keys", headers=bearer(root), json={"name": "n"})
        by_key = await client.get("/v1/admin/usage?since=1h&by=key", headers=bearer(root))
        assert by_key.status_code == 200
        body = by_key.json()
        assert body["by"] == "key" and body["since"] == "1h" and body["has_more"] is False
        assert isinstance(body["accounts"], list)  # each account's free neurons today, as `cfai usage` shows
        groups = {row["group"]: row for row in body["data"]}
        assert groups[user_id]["requests"] == 3 and groups[user_id]["prompt_tokens"] > 0
        assert groups[root_id]["requests"] == 1  # the create, logged like any request
        by_route = (await client.get("/v1/admin/usage?by=route", headers=bearer(root))).json()
        routes = {row["group"]: row["requests"] for row in by_route["data"]}
        assert routes["chat/completions"] == 3 and routes["admin/keys"] == 1 and routes["admin/usage"] == 1
        limited = (await client.get("/v1/admin/usage?by=route&limit=1", headers=bearer(root))).json()
        assert len(limited["data"]) == 1 and limited["has_more"] is True
        assert error_of(await client.get("/v1/admin/usage?by=colour", headers=bearer(root)), 400)["param"] == "by"
        assert error_of(await client.get("/v1/admin/usage?since=later", headers=bearer(root)), 400)["param"] == \
            "since"
        metrics = (await client.get("/metrics", headers=bearer(root))).text
    assert made.status_code == 201 and made.json()["key"] not in metrics
    assert 'route="/v1/admin/keys"' in metrics and root_id not in metrics.split("key_id")[0]
    await asyncio.sleep(0)
    rows = UsageLog(settings.database).rows(since=0)
    assert any(r.route == "admin/keys" and r.key_id == root_id and r.status == 201 for r in rows)


async def test_openapi_describes_the_admin_routes(settings: Settings) -> None:
    async with offline(settings) as client:
        doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/v1/admin/keys"]) == {"get", "post"}
    assert set(paths["/v1/admin/keys/{key_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/v1/admin/keys/{key_id}/rotate"]) == {"post"}
    assert set(paths["/v1/admin/usage"]) == {"get"}
    create = paths["/v1/admin/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][create.rsplit("/", 1)[1]]
    assert {"name", "scopes", "models", "rpm", "rpd", "tpm", "expires_in", "expires_at", "cache"} <= set(
        schema["properties"])
    usage_params = {p["name"] for p in paths["/v1/admin/usage"]["get"]["parameters"]}
    assert usage_params == {"since", "by", "limit"}
    assert "409" in paths["/v1/admin/keys/{key_id}"]["delete"]["responses"]


async def test_budget_fields_on_create_update_and_show(settings: Settings) -> None:
    root, _ = admin_key(settings)
    async with offline(settings) as client:
        made = await client.post("/v1/admin/keys", headers=bearer(root),
                                 json={"name": "intern", "budget_neurons_per_day": 2000, "budget_usd_per_month": 2.5})
        assert made.status_code == 201, made.text
        key_id = made.json()["id"]
        shown = (await client.get(f"/v1/admin/keys/{key_id}", headers=bearer(root))).json()
        assert (shown["budget_neurons_per_day"], shown["budget_usd_per_month"]) == (2000, 2.5)
        changed = (await client.patch(f"/v1/admin/keys/{key_id}", headers=bearer(root),
                                      json={"budget_neurons_per_day": None, "budget_usd_per_month": 1})).json()
        assert (changed["budget_neurons_per_day"], changed["budget_usd_per_month"]) == (None, 1)
        for field, value in (("budget_neurons_per_day", 0), ("budget_usd_per_month", -1),
                             ("budget_usd_per_month", "5")):
            bad = await client.patch(f"/v1/admin/keys/{key_id}", headers=bearer(root), json={field: value})
            assert error_of(bad, 400)["param"] == field
