"""The funding window (policy fund_daily): its own atomic check-and-reserve, never part of the spend windows.

Every test runs on SQLite and on PostgreSQL (``BOTH_BACKENDS``).
"""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from helpers import BOTH_BACKENDS, Clock
from interlace_mcp.policy import AgentPolicy, Database, Ledger, RequestKey, RequestRecord
from interlace_mcp.policy import Refusal as Refused
from interlace_mcp.policy._schema import MIGRATIONS

pytestmark = BOTH_BACKENDS

SCOPE = "https://sandbox.example|acct-1"
FUND = "fund_account"


def policy(fund_daily: str | None, *, daily: str | None = None, tz: str = "UTC", agent: str = "a") -> AgentPolicy:
    return AgentPolicy(
        agent=agent,
        timezone=tz,
        per_transaction=None,
        daily=None if daily is None else Decimal(daily),
        monthly=None,
        max_active_cards=None,
        fund_daily=None if fund_daily is None else Decimal(fund_daily),
    )


def key(pol: AgentPolicy, rid: str, tool: str = FUND) -> RequestKey:
    return RequestKey(SCOPE, pol.agent, tool, rid)


def fund(ledger: Ledger, pol: AgentPolicy, amount: str, rid: str, **kw: Any) -> RequestRecord:
    """begin() a new funding of ``amount`` (raises Refused when the funding window is full)."""
    begun = ledger.begin(key(pol, rid), args_hash=rid, policy=pol, spend=Decimal(0), fund=Decimal(amount),
                         currency="USDC", **kw)  # fmt: skip
    assert begun.is_new
    return begun.record


def status(ledger: Ledger, pol: AgentPolicy) -> dict[str, Any]:
    return ledger.fund_status(SCOPE, pol.agent, pol).as_dict()


@pytest.fixture
def ledger(database_url: str, clock: Clock) -> Any:
    led = Ledger.from_url(database_url, clock=clock)
    yield led
    led.close()


def test_threads_never_push_the_funding_window_past_fund_daily(ledger: Ledger, database_url: str, clock: Clock) -> None:
    """60 threads on two connections funding 5.00 against fund_daily 50.00: exactly 10 are held."""
    pol = policy("50.00")
    other = Ledger.from_url(database_url, clock=clock)  # a second connection, on the same day
    start = threading.Barrier(60)
    accepted: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        led = ledger if i % 2 else other
        start.wait()
        try:
            fund(led, pol, "5.00", f"f{i}")
        except Refused as exc:
            if [v.code for v in exc.violations] != ["fund_limit"]:
                errors.append(exc)
            return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            return
        accepted.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(60)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert errors == []
    assert len(accepted) == 10
    assert status(ledger, pol)["reserved"] == "50.00" and status(ledger, pol)["remaining"] == "0.00"
    assert ledger.fund_totals(SCOPE) == (Decimal("0.00"), Decimal("50.00"))
    assert ledger.reserved_total(SCOPE) == Decimal("0")  # not spend


def test_funding_and_spend_keep_separate_windows(ledger: Ledger) -> None:
    """A full spend day leaves funding open, and a full funding day leaves spend open."""
    pol = policy("30.00", daily="20.00")
    spent = ledger.begin(key(pol, "s", "issue_card"), args_hash="s", policy=pol, spend=Decimal("20.00"), currency="USD")
    ledger.complete(spent.record.key, {"status": "completed"})
    fund(ledger, pol, "30.00", "f")
    ledger.complete(key(pol, "f"), {"status": "completed"})
    day = next(w for w in ledger.window_status(SCOPE, "a", pol) if w.window == "day")
    assert (day.spent, day.reserved) == (Decimal("20.00"), Decimal("0.00"))
    assert status(ledger, pol) == {**status(ledger, pol), "funded": "30.00", "reserved": "0.00", "remaining": "0.00"}
    assert ledger.committed_total(SCOPE) == Decimal("20.00")
    assert ledger.daily_spend(SCOPE, 1)[-1][1] == Decimal("20.00")
    with pytest.raises(Refused) as full:
        fund(ledger, pol, "0.01", "more")
    assert full.value.code == "fund_limit"
    assert "daily funding limit 30.00 USD: 30.00 funded, 0.00 reserved, 0.01 requested, 0.00 remaining" in str(
        full.value
    )


@pytest.mark.parametrize("how", ["abandon", "deny", "expire"])
def test_a_released_funding_is_available_again(ledger: Ledger, clock: Clock, how: str) -> None:
    """A definite failure, a denial or an expired approval gives the held amount back to the day."""
    pol = policy("10.00")
    record = fund(ledger, pol, "10.00", "f", needs_approval=how != "abandon", approval_summary="fund")
    assert status(ledger, pol)["reserved"] == "10.00"
    if how == "abandon":
        ledger.abandon(record.key)
    elif how == "deny":
        assert record.approval_id is not None
        ledger.decide(record.approval_id, approve=False, by="alice")
    else:
        clock.advance(901)
        ledger.expire_now()
    assert status(ledger, pol) == {**status(ledger, pol), "funded": "0.00", "reserved": "0.00", "remaining": "10.00"}
    fund(ledger, pol, "10.00", "again")


def test_an_approval_holds_and_names_the_funded_amount(ledger: Ledger) -> None:
    """A funding above approval_above is pending with the funded amount on its approval."""
    pol = policy("100.00")
    record = fund(ledger, pol, "60.00", "big", needs_approval=True, approval_summary="a: fund 60.00 USDC")
    approval = ledger.get_approval(record.approval_id or "")
    assert record.status == "pending_approval" and record.amount == Decimal("60.00")
    assert approval is not None and approval.amount == Decimal("60.00") and approval.currency == "USDC"
    assert status(ledger, pol)["reserved"] == "60.00"


def test_the_funding_window_resets_at_local_midnight(ledger: Ledger, clock: Clock) -> None:
    """fund_daily is a calendar day in the policy's timezone."""
    pol = policy("10.00", tz="Asia/Tokyo")
    clock.now = datetime(2026, 11, 24, 23, 30, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    fund(ledger, pol, "10.00", "late")
    assert status(ledger, pol)["resets_at"] == "2026-11-24T15:00:00Z"
    with pytest.raises(Refused):
        fund(ledger, pol, "1.00", "same-day")
    clock.advance(3600)
    fund(ledger, pol, "10.00", "next-day")


def test_no_limit_still_records_the_funding(ledger: Ledger) -> None:
    """fund_daily none: nothing is refused, and what was funded still shows."""
    pol = policy(None)
    fund(ledger, pol, "999999.00", "huge")
    assert status(ledger, pol) == {**status(ledger, pol), "limit": None, "reserved": "999999.00", "remaining": None}


def test_spend_entries_from_before_funding_stay_spend(new_database_url: Any, clock: Clock) -> None:
    """A database at schema version 2 upgrades: its entries are spend, its totals unchanged."""
    url = new_database_url()
    db = Database.from_url(url)
    try:
        db.migrate("ledger", MIGRATIONS[:2])
        db.execute(
            "INSERT INTO spend_entries (scope, agent, currency, amount_minor, state, tool, request_id, day_key,"
            " week_key, month_key, created_at, updated_at) VALUES (?, 'a', 'USD', 700, 'committed', 'issue_card',"
            " 'old', '2026-11-24', '2026-11-23', '2026-11', 0, 0)",
            (SCOPE,),
        )
    finally:
        db.close()
    ledger = Ledger.from_url(url, clock=clock)
    try:
        assert ledger.committed_total(SCOPE) == Decimal("7.00")
        assert ledger.fund_totals(SCOPE) == (Decimal("0.00"), Decimal("0.00"))
    finally:
        ledger.close()
