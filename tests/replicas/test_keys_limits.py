"""Keys, rate limits and budgets across two replicas: one gateway as far as a client can tell."""

from __future__ import annotations

import httpx
import pytest

from cfai_cli.core.cost import usd_of_neurons
from tests.billing_workers import cost
from tests.replicas.conftest import Gateway
from tests.replicas.helpers import MODEL, burst, chat_status, mint, usage_group

C = cost(MODEL)  # neurons per chat call at the stand-in


def test_a_key_minted_on_a_works_on_b_and_revoked_on_b_fails_on_a(gateway: Gateway) -> None:
    key, key_id = mint(gateway.a, gateway.admin, scopes=["chat", "models"])
    assert chat_status(gateway.b, key) == (200, "ok")  # at once: no wait for a cache to expire
    assert gateway.b.sdk(key).models.list().object == "list"  # the models scope, on B
    assert chat_status(gateway.a, key) == (200, "ok")  # A has it cached now
    revoked = httpx.delete(f"{gateway.b.url}/v1/admin/keys/{key_id}",
                           headers={"Authorization": f"Bearer {gateway.admin}"}, timeout=30)
    assert revoked.status_code == 200 and revoked.json()["deleted"] is True
    assert chat_status(gateway.a, key)[0] == 401
    assert chat_status(gateway.b, key)[0] == 401


def test_a_key_minted_with_cfai_keygen_elsewhere_works_on_both(gateway: Gateway) -> None:
    from tests.replicas.conftest import cli

    made = cli(gateway.env, "keygen", "--name", "third-host")
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[0]
    assert chat_status(gateway.a, key) == (200, "ok")
    assert chat_status(gateway.b, key) == (200, "ok")


def test_rpm_10_forty_at_once_across_both_exactly_ten_served(gateway: Gateway) -> None:
    key, key_id = mint(gateway.b, gateway.admin, scopes=["chat"], rpm=10)
    calls = len(gateway.standin.calls)
    answers = burst(gateway, key)
    assert sorted(status for status, _ in answers) == [200] * 10 + [429] * 30
    assert {code for status, code in answers if status == 429} == {"rate_limit_exceeded"}
    assert len(gateway.standin.calls_since(calls)) == 10  # the refused ones never reached Workers AI
    # Both replicas served some and refused some: the limit is one window, not one per replica.
    assert chat_status(gateway.a, key)[0] == 429 and chat_status(gateway.b, key)[0] == 429
    usage_group(gateway, key_id, requests=42)


def test_a_token_limit_counts_the_tokens_used_on_both(gateway: Gateway) -> None:
    key, _ = mint(gateway.a, gateway.admin, scopes=["chat"], tpm=3000)  # each call uses 1,500 tokens
    assert chat_status(gateway.a, key)[0] == 200
    assert chat_status(gateway.b, key)[0] == 200
    assert chat_status(gateway.a, key) == (429, "rate_limit_exceeded")
    assert chat_status(gateway.b, key) == (429, "rate_limit_exceeded")


@pytest.mark.parametrize("budget", ["day", "month"])
def test_a_budget_of_ten_calls_admits_exactly_ten_across_both(gateway: Gateway, budget: str) -> None:
    # One settled budgeted request on A: every replica holds the model's mean cost per call from here on
    # (a request's own estimate before that is its prompt's; docs/cost.md, "Budgets").
    warm, _ = mint(gateway.a, gateway.admin, scopes=["chat"], budget_neurons_per_day=1e9)
    assert chat_status(gateway.a, warm)[0] == 200
    policy = ({"budget_neurons_per_day": 10 * C} if budget == "day"
              else {"budget_usd_per_month": usd_of_neurons(10 * C)})
    key, key_id = mint(gateway.a, gateway.admin, scopes=["chat"], **policy)
    calls = len(gateway.standin.calls)
    answers = burst(gateway, key)
    assert sorted(status for status, _ in answers) == [200] * 10 + [429] * 30
    assert {code for status, code in answers if status == 429} == {"insufficient_quota"}
    assert len(gateway.standin.calls_since(calls)) == 10
    group = usage_group(gateway, key_id, requests=40)
    assert group["errors"] == 30
    assert group["neurons"] == pytest.approx(10 * C, rel=1e-9)
    assert group["cost_usd"] == pytest.approx(usd_of_neurons(10 * C), rel=1e-9)
    assert chat_status(gateway.b, key) == (429, "insufficient_quota")
