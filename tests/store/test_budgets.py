"""The budget ledger (store.budgets): neurons per key and UTC day, summed for today and this calendar month."""

from __future__ import annotations

from pathlib import Path

from cfai_cli.store.budgets import BudgetLedger
from tests.core.test_budgets import at


def test_the_ledger_sums_today_and_this_month_per_key(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "cfai.db")
    ledger.add("key_a", 5, now=at("2026-11-30T23:59:00"))  # last month
    ledger.add("key_a", 7, now=at("2026-12-01T08:00:00"))
    ledger.add("key_a", 3, now=at("2026-12-02T01:00:00"))
    ledger.add("key_a", 2, now=at("2026-12-02T23:00:00"))
    ledger.add("key_b", 50, now=at("2026-12-02T02:00:00"))
    ledger.add("key_a", 0, now=at("2026-12-02T02:00:00"))
    assert ledger.spent("key_a", now=at("2026-12-02T23:30:00")) == (5.0, 12.0)
    assert ledger.spent("key_a", now=at("2026-12-03T00:00:00")) == (0.0, 12.0)
    refusal = ledger.check("key_a", per_day=5, per_month_usd=None, now=at("2026-12-02T23:30:00"))
    assert refusal is not None and "resets at 2026-12-03 00:00 UTC" in refusal.message
