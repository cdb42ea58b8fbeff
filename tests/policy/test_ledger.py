"""The spend ledger: calendar windows in the policy's timezone, inclusive limits, restarts, races, a model check.

Every test runs on SQLite and on PostgreSQL (``BOTH_BACKENDS``).
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import ledger_race_worker
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from helpers import BOTH_BACKENDS, Clock
from interlace_mcp.policy import AgentPolicy, Database, Ledger, RequestConflict, RequestKey, RequestRecord
from interlace_mcp.policy import Refusal as Refused

pytestmark = BOTH_BACKENDS

SCOPE = "https://sandbox.example|acct-1"
TOOL = "issue_card"
#: Read at import: the autouse fixture clears INTERLACE_* variables before each test runs.
FULL = os.environ.get("INTERLACE_TEST_FULL") == "1"


def at(tz: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    """Epoch seconds of a local wall-clock time in ``tz``."""
    return datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(tz)).timestamp()


def policy(agent: str = "a", tz: str = "UTC", **limits: str) -> AgentPolicy:
    """An agent policy with only the given window limits (everything else unlimited)."""
    values: dict[str, Decimal | None] = dict.fromkeys(("per_transaction", "daily", "weekly", "monthly", "lifetime"))
    values.update({name: Decimal(amount) for name, amount in limits.items()})
    return AgentPolicy(agent=agent, timezone=tz, max_active_cards=None, **values)  # type: ignore[arg-type]


def key(pol: AgentPolicy, rid: str) -> RequestKey:
    return RequestKey(SCOPE, pol.agent, TOOL, rid)


def reserve(ledger: Ledger, pol: AgentPolicy, amount: str, rid: str, **kw: Any) -> RequestRecord:
    """begin() a new request for ``amount`` (raises Refused when a window is full)."""
    begun = ledger.begin(key(pol, rid), args_hash=rid, policy=pol, spend=Decimal(amount), currency="USD", **kw)
    assert begun.is_new
    return begun.record


def spend(ledger: Ledger, pol: AgentPolicy, amount: str, rid: str) -> None:
    """Reserve and commit ``amount``."""
    reserve(ledger, pol, amount, rid)
    ledger.complete(key(pol, rid), {"status": "completed", "request_id": rid})


def refusal(ledger: Ledger, pol: AgentPolicy, amount: str, rid: str) -> str:
    with pytest.raises(Refused) as info:
        reserve(ledger, pol, amount, rid)
    assert ledger.peek_request(key(pol, rid)) is None  # a refusal stores nothing
    return str(info.value)


def window(ledger: Ledger, pol: AgentPolicy, name: str) -> dict[str, Any]:
    return next(w.as_dict() for w in ledger.window_status(SCOPE, pol.agent, pol) if w.window == name)


@pytest.fixture
def ledger(database_url: str, clock: Clock) -> Any:
    led = Ledger.from_url(database_url, clock=clock)
    yield led
    led.close()


# ---- calendar windows in the policy's timezone -------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "resets"),
    [
        ("America/New_York", date(2026, 11, 24), "2026-11-25T05:00:00Z"),
        ("Asia/Tokyo", date(2026, 11, 24), "2026-11-24T15:00:00Z"),
    ],
)
def test_daily_window_resets_at_local_midnight(ledger: Ledger, clock: Clock, tz: str, day: date, resets: str) -> None:
    """99.00 of 100.00 spent: 2.00 is refused one second before local midnight and accepted at it."""
    pol = policy(tz=tz, daily="100.00")
    clock.now = at(tz, day.year, day.month, day.day, 0, 0, 0)
    spend(ledger, pol, "99.00", "morning")
    clock.now = at(tz, day.year, day.month, day.day, 23, 59, 59)
    assert refusal(ledger, pol, "2.00", "late") == (
        "[daily_limit] daily limit 100.00 USD: 99.00 spent, 0.00 reserved, 2.00 requested, 1.00 remaining;"
        f" resets {resets}"
    )
    clock.advance(1)
    reserve(ledger, pol, "2.00", "late")
    status = window(ledger, pol, "day")
    assert (status["spent"], status["reserved"], status["remaining"]) == ("0.00", "2.00", "98.00")


@pytest.mark.parametrize(
    ("tz", "last", "first", "resets"),
    [
        ("America/New_York", date(2026, 10, 31), date(2026, 11, 1), "2026-11-01T04:00:00Z"),
        ("Asia/Tokyo", date(2026, 11, 30), date(2026, 12, 1), "2026-11-30T15:00:00Z"),
    ],
)
def test_monthly_window_resets_on_the_local_first(
    ledger: Ledger, clock: Clock, tz: str, last: date, first: date, resets: str
) -> None:
    """A full month refuses at local 23:59:59 on its last day and accepts at 00:00:00 on the first."""
    pol = policy(tz=tz, monthly="400.00")
    clock.now = at(tz, last.year, last.month, 1, 0, 0, 0)
    spend(ledger, pol, "150.00", "early")
    clock.now = at(tz, last.year, last.month, 15, 12, 0, 0)
    spend(ledger, pol, "249.00", "mid")
    clock.now = at(tz, last.year, last.month, last.day, 23, 59, 59)
    assert refusal(ledger, pol, "2.00", "late") == (
        "[monthly_limit] monthly limit 400.00 USD: 399.00 spent, 0.00 reserved, 2.00 requested, 1.00 remaining;"
        f" resets {resets}"
    )
    clock.now = at(tz, first.year, first.month, first.day, 0, 0, 0)
    reserve(ledger, pol, "400.00", "next-month")


def test_weekly_window_starts_monday_in_local_time(ledger: Ledger, clock: Clock) -> None:
    """The week ends at local Sunday 24:00 (Tokyo), not at the UTC week boundary."""
    tz = "Asia/Tokyo"
    pol = policy(tz=tz, weekly="250.00")
    clock.now = at(tz, 2026, 11, 23, 0, 0, 0)  # Monday
    spend(ledger, pol, "250.00", "monday")
    clock.now = at(tz, 2026, 11, 29, 23, 59, 59)  # Sunday
    text = refusal(ledger, pol, "0.01", "sunday")
    assert text.startswith("[weekly_limit] weekly limit 250.00 USD: 250.00 spent, 0.00 reserved, 0.01 requested")
    assert text.endswith("resets 2026-11-29T15:00:00Z")
    clock.advance(1)  # Monday 00:00 in Tokyo, still Sunday in UTC
    reserve(ledger, pol, "250.00", "next-monday")


def test_window_status_reports_local_resets_across_dst(ledger: Ledger, clock: Clock) -> None:
    """On New York's 23-hour DST day the daily reset is the next local midnight (04:00Z, not 05:00Z)."""
    pol = policy(tz="America/New_York", daily="100.00", weekly="300.00", monthly="400.00", lifetime="1000.00")
    clock.now = at("America/New_York", 2026, 3, 8, 12, 0, 0)
    spend(ledger, pol, "10.00", "x")
    status = {w.window: w.as_dict() for w in ledger.window_status(SCOPE, pol.agent, pol)}
    assert status["day"]["resets_at"] == "2026-03-09T04:00:00Z"
    assert status["week"]["resets_at"] == "2026-03-09T04:00:00Z"  # 2026-03-09 is a Monday
    assert status["month"]["resets_at"] == "2026-04-01T04:00:00Z"
    assert status["lifetime"]["resets_at"] is None
    assert {name: status[name]["remaining"] for name in ("day", "week", "month", "lifetime")} == {
        "day": "90.00",
        "week": "290.00",
        "month": "390.00",
        "lifetime": "990.00",
    }


def test_clock_moving_back_does_not_reopen_the_new_day(ledger: Ledger, clock: Clock) -> None:
    """After midnight, a clock stepped back charges the old day; the new day never exceeds its limit."""
    tz = "America/New_York"
    pol = policy(tz=tz, daily="100.00")
    clock.now = at(tz, 2026, 11, 24, 12, 0, 0)
    spend(ledger, pol, "99.00", "day1")
    clock.now = at(tz, 2026, 11, 25, 0, 0, 0)
    spend(ledger, pol, "100.00", "day2")
    clock.advance(-1)  # the wall clock steps back into day 1
    assert "99.00 spent" in refusal(ledger, pol, "2.00", "back-2")
    reserve(ledger, pol, "1.00", "back-1")  # what day 1 had left
    assert "1.00 reserved, 0.01 requested, 0.00 remaining" in refusal(ledger, pol, "0.01", "back-more")
    clock.advance(2)  # day 2 again
    assert refusal(ledger, pol, "0.01", "day2-more").startswith(
        "[daily_limit] daily limit 100.00 USD: 100.00 spent, 0.00 reserved, 0.01 requested, 0.00 remaining"
    )
    ledger.complete(key(pol, "back-1"), {})  # committed on day 2, still counted in day 1
    assert window(ledger, pol, "day")["spent"] == "100.00"


def test_a_reservation_counts_in_the_window_it_was_made(ledger: Ledger, clock: Clock) -> None:
    """Reserved before local midnight and committed after: the new day's budget is untouched."""
    tz = "Asia/Tokyo"
    pol = policy(tz=tz, daily="100.00")
    clock.now = at(tz, 2026, 11, 24, 23, 59, 0)
    reserve(ledger, pol, "100.00", "late")
    clock.now = at(tz, 2026, 11, 25, 0, 1, 0)
    ledger.complete(key(pol, "late"), {})
    assert window(ledger, pol, "day") == {
        "window": "day",
        "limit": "100.00",
        "spent": "0.00",
        "reserved": "0.00",
        "remaining": "100.00",
        "resets_at": "2026-11-25T15:00:00Z",
    }
    reserve(ledger, pol, "100.00", "new-day")
    assert ledger.committed_total(SCOPE, "a") == Decimal("100.00")


# ---- limits are inclusive; released money is available again ----------------------------------


@pytest.mark.parametrize("limit", ["daily", "weekly", "monthly", "lifetime"])
def test_spending_exactly_the_limit_is_allowed(ledger: Ledger, limit: str) -> None:
    """Committed + reserved may reach the limit exactly; one cent more is refused."""
    pol = policy(**{limit: "100.00"})
    spend(ledger, pol, "60.00", "one")
    reserve(ledger, pol, "40.00", "two")
    text = refusal(ledger, pol, "0.01", "three")
    assert text.startswith(f"[{limit}_limit]" if limit != "daily" else "[daily_limit]")
    assert "60.00 spent, 40.00 reserved, 0.01 requested, 0.00 remaining" in text
    if limit == "lifetime":
        assert text.endswith("; never resets")


def test_every_broken_window_is_named_in_order(ledger: Ledger) -> None:
    """One refusal lists each window the request breaks: daily, weekly, monthly, lifetime."""
    pol = policy(daily="10.00", weekly="20.00", monthly="30.00", lifetime="40.00")
    with pytest.raises(Refused) as info:
        reserve(ledger, pol, "50.00", "big")
    assert [v.code for v in info.value.violations] == ["daily_limit", "weekly_limit", "monthly_limit", "lifetime_limit"]
    assert str(info.value).count("[") == 4


def test_released_money_is_available_again(ledger: Ledger) -> None:
    """Abandoning a reservation frees its amount in every window at once."""
    pol = policy(daily="100.00", monthly="100.00")
    reserve(ledger, pol, "100.00", "first")
    refusal(ledger, pol, "0.01", "blocked")
    ledger.abandon(key(pol, "first"))
    assert ledger.reserved_total(SCOPE) == Decimal("0.00")
    reserve(ledger, pol, "100.00", "second")
    assert window(ledger, pol, "month")["reserved"] == "100.00"


def test_agents_and_scopes_have_separate_budgets(ledger: Ledger) -> None:
    """One agent's spend (or the same agent's spend on another upstream) never uses another's budget."""
    a, b = policy("a", daily="10.00"), policy("b", daily="10.00")
    spend(ledger, a, "10.00", "x")
    reserve(ledger, b, "10.00", "x")
    other = RequestKey("https://other|acct-2", "a", TOOL, "x")
    ledger.begin(other, args_hash="x", policy=a, spend=Decimal("10.00"), currency="USD")
    refusal(ledger, a, "0.01", "y")


# ---- restart -------------------------------------------------------------------------------------


def test_state_survives_a_restart(database_url: str, clock: Clock) -> None:
    """Closing and reopening the database keeps spend, reservations, approvals, request records, cards, freezes."""
    pol = policy(daily="100.00")
    first = Ledger.from_url(database_url, clock=clock)
    spend(first, pol, "10.00", "done")
    done = first.get_request(key(pol, "done"))
    reserve(first, pol, "5.00", "flying", steps=("create", "limit"))
    first.save_progress(key(pol, "flying"), {"create": "sent"}, card_id=None)
    flying = first.get_request(key(pol, "flying"))
    pending = reserve(
        first, pol, "30.00", "big", needs_approval=True, approval_summary="a: card 30.00", approval_ttl=900
    )
    first.register_card(SCOPE, "a", "card-1", label="groceries", request_id="done")
    first.set_agent_frozen("a", True, by="ops", reason="lost laptop")
    first.close()

    second = Ledger.from_url(database_url, clock=clock)
    assert second.committed_total(SCOPE) == Decimal("10.00")
    assert second.reserved_total(SCOPE) == Decimal("35.00")
    [approval] = second.list_approvals()
    assert approval.id == pending.approval_id and approval.status == "pending"
    assert approval.expires_at == clock.now + 900 and approval.summary == "a: card 30.00"
    replay = second.begin(key(pol, "done"), args_hash="done", policy=pol, spend=Decimal("10.00"), currency="USD")
    assert not replay.is_new and replay.record == done
    assert replay.record.status == "completed" and replay.record.result == {"status": "completed", "request_id": "done"}
    resumed = second.begin(key(pol, "flying"), args_hash="flying", policy=pol, spend=Decimal("5.00"), currency="USD")
    assert not resumed.is_new and resumed.record == flying and resumed.record.progress == {"create": "sent"}
    assert [r.key.request_id for r in second.open_requests(SCOPE)] == ["flying"]
    with pytest.raises(RequestConflict):
        second.begin(key(pol, "done"), args_hash="other-args", policy=pol, spend=Decimal("10.00"), currency="USD")
    card = second.owned_card(SCOPE, "a", "card-1")
    assert card is not None and card.label == "groceries" and card.request_id == "done"
    assert second.owned_card(SCOPE, "b", "card-1") is None
    assert second.agent_frozen("a") == ("lost laptop", "ops")
    assert second.agent_frozen("b") is None
    assert window(second, pol, "day") == {
        "window": "day",
        "limit": "100.00",
        "spent": "10.00",
        "reserved": "35.00",
        "remaining": "55.00",
        "resets_at": window(second, pol, "day")["resets_at"],
    }
    clock.advance(899)
    assert second.expire_now() == 0
    clock.advance(1)  # the approval's expiry, measured from before the restart
    assert second.expire_now() == 1
    second.close()

    third = Ledger.from_url(database_url, clock=clock)
    assert third.reserved_total(SCOPE) == Decimal("5.00")
    expired = third.peek_request(key(pol, "big"))
    assert expired is not None and expired.status == "refused"
    assert expired.result is not None and expired.result["code"] == "approval_expired"
    assert third.list_approvals(status="expired")[0].id == pending.approval_id
    third.close()


# ---- tokens, webhook events, dashboard queries ---------------------------------------------------


def test_tokens_webhook_events_and_dashboard_queries(ledger: Ledger, clock: Clock) -> None:
    """Agent and operator tokens, de-duplicated webhook events and daily spend history, as the tools read them."""
    ledger.add_token("shopper", "t1")
    ledger.add_token("shopper", "t2")
    ledger.add_operator_token("alice", "o1")
    assert (ledger.agent_for_token("t1"), ledger.agent_for_token("o1")) == ("shopper", None)
    assert (ledger.operator_for_token("o1"), ledger.operator_for_token("t1")) == ("alice", None)
    assert ledger.token_agents() == {"shopper": 2} and ledger.operator_names() == {"alice": 1}
    assert ledger.revoke_tokens("shopper") == 2 and ledger.revoke_operator_tokens("alice") == 1
    assert ledger.agent_for_token("t1") is None and ledger.token_agents() == {} and ledger.operator_names() == {}

    def event(event_id: str, status: str, at_time: float, amount: str = "7.25") -> bool:
        return ledger.record_card_event(
            event_id, "card.transaction", scope=SCOPE, transaction_id="tx-1", card_id="card-1", type_code=1,
            status=status, amount=Decimal(amount), currency="USD", merchant="Shop", remark=None, event_time=at_time,
        )  # fmt: skip

    assert event("n1", "PENDING", 10.0) is True
    assert event("n1", "PENDING", 10.0) is False  # the same notification again
    assert event("n2", "CLOSED", 12.0, "7.00") is True
    assert event("n3", "PENDING", 11.0) is True  # late and older: recorded, but the final status stays
    assert ledger.card_activity(SCOPE, ["card-1"], 0.0) == {"authorized": Decimal("7.00"), "approved": 1, "declined": 0}

    pol = policy(daily="100.00")
    clock.now = at("UTC", 2026, 11, 22, 12)
    spend(ledger, pol, "3.00", "d1")
    clock.now = at("UTC", 2026, 11, 24, 12)
    spend(ledger, pol, "4.50", "d3")
    reserve(ledger, pol, "1.00", "open")  # reserved, not spent
    assert ledger.daily_spend(SCOPE, 3) == [
        ("2026-11-22", Decimal("3.00")),
        ("2026-11-23", Decimal("0.00")),
        ("2026-11-24", Decimal("4.50")),
    ]
    assert ledger.daily_spend(SCOPE, 2, agent="nobody") == [("2026-11-23", 0), ("2026-11-24", 0)]
    assert ledger.known_agents() == ["a"]


# ---- concurrency ---------------------------------------------------------------------------------


def test_threads_never_exceed_max_active_cards(ledger: Ledger, database_url: str) -> None:
    """30 threads (on two connections) issuing cards against max_active_cards 3: exactly 3 get a slot."""
    pol = AgentPolicy(agent="a", per_transaction=None, daily=None, monthly=None, weekly=None, max_active_cards=3)
    other = Ledger.from_url(database_url)  # a second connection to the same database
    start = threading.Barrier(30)
    accepted: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        led = ledger if i % 2 else other
        start.wait()
        try:
            led.begin(key(pol, f"c{i}"), args_hash="x", policy=pol, spend=Decimal("1.00"), currency="USD",
                      issues_card=True)  # fmt: skip
        except Refused as exc:
            if [v.code for v in exc.violations] != ["max_active_cards"]:
                errors.append(exc)
            return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            return
        accepted.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(30)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert errors == []
    assert len(accepted) == 3


def test_threads_never_push_a_window_past_its_limit(ledger: Ledger) -> None:
    """100 threads reserving 5.00 against daily 100.00: exactly 20 succeed."""
    pol = policy(daily="100.00")
    start = threading.Barrier(100)
    accepted: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        start.wait()
        try:
            reserve(ledger, pol, "5.00", f"t{i}")
        except Refused:
            return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            return
        accepted.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(accepted) == 20
    assert ledger.reserved_total(SCOPE, "a") == Decimal("100.00")
    assert window(ledger, pol, "day")["reserved"] == "100.00"


def test_processes_never_push_a_window_past_its_limit(database_url: str) -> None:
    """4 processes x 50 reservations of 5.00 on one fresh database against daily 100.00: exactly 20 in total."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    now = at("America/New_York", 2026, 11, 24, 12)
    procs = [
        ctx.Process(target=ledger_race_worker.reserve_many, args=(database_url, w, 50, now, barrier, results))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]  # a child that died (e.g. "database is locked") fails here
    reported = dict(results.get(timeout=10) for _ in procs)
    results.close()
    results.join_thread()
    assert sum(reported.values()) == 20
    check = Ledger.from_url(database_url, clock=lambda: now)
    try:
        assert check.reserved_total(ledger_race_worker.SCOPE) == Decimal("100.00")
        pol = ledger_race_worker.POLICY
        status = {w.window: w for w in check.window_status(ledger_race_worker.SCOPE, pol.agent, pol)}
        assert status["day"].reserved == Decimal("100.00") and status["day"].remaining == Decimal("0.00")
    finally:
        check.close()
    conn = Database.from_url(database_url)
    try:
        assert conn.execute("SELECT COUNT(*) FROM spend_entries WHERE state = 'reserved'").fetchone()[0] == 20
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 20
    finally:
        conn.close()


# ---- model-based check -----------------------------------------------------------------------------

AGENTS = {
    "ny": policy("ny", "America/New_York", daily="50.00", weekly="70.00", monthly="100.00"),
    "tokyo": policy("tokyo", "Asia/Tokyo", monthly="90.00", lifetime="100.00"),
}
WINDOW_NAMES = ("day", "week", "month", "lifetime")
CODES = {"day": "daily_limit", "week": "weekly_limit", "month": "monthly_limit", "lifetime": "lifetime_limit"}
TTL = 900.0


def model_keys(now: float, tz: str) -> dict[str, str]:
    """The calendar keys the model expects (computed independently of the ledger's code)."""
    today = datetime.fromtimestamp(now, ZoneInfo(tz)).date()
    return {
        "day": today.isoformat(),
        "week": (today - timedelta(days=today.weekday())).isoformat(),
        "month": f"{today.year:04d}-{today.month:02d}",
        "lifetime": "all",
    }


def cents(limit: Decimal | None) -> int | None:
    return None if limit is None else int(limit * 100)


@dataclass
class Entry:
    rid: str
    agent: str
    cents: int
    keys: dict[str, str]
    state: str  # reserved | committed | released
    status: str  # executing | pending_approval | completed | refused | abandoned
    approval_id: str | None = None
    approval: str | None = None  # pending | approved | used | denied | expired
    expires_at: float = 0.0


class LedgerMachine(RuleBasedStateMachine):
    """Random reserve/commit/release/approve/deny/expire steps; a model predicts every accept and refusal."""

    #: A fresh, empty database per example (SQLite file or PostgreSQL schema).
    new_database: Callable[[], str]

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(at("America/New_York", 2026, 11, 30, 22, 30))
        url = type(self).new_database()
        self.ledger = Ledger.from_url(url, clock=self.clock)
        self.reader = Database.from_url(url)
        self.entries: list[Entry] = []
        self.seq = 0

    def teardown(self) -> None:
        self.reader.close()
        self.ledger.close()

    # -- model helpers
    def used(self, agent: str, window: str, wkey: str) -> int:
        return sum(
            e.cents
            for e in self.entries
            if e.agent == agent and e.state in ("reserved", "committed") and e.keys[window] == wkey
        )

    def sync_expiry(self) -> int:
        """Mirror the ledger's expiry sweep (run by begin, decide, start_approved, expire_now)."""
        expired = 0
        for e in self.entries:
            if e.approval in ("pending", "approved") and e.expires_at <= self.clock.now:
                e.approval, expired = "expired", expired + 1
                if e.status == "pending_approval":
                    e.state, e.status = "released", "refused"
        return expired

    def live(self, approval: str) -> list[Entry]:
        return [e for e in self.entries if e.approval == approval and e.expires_at > self.clock.now]

    def with_status(self, status: str) -> list[Entry]:
        return [e for e in self.entries if e.status == status]

    def key_of(self, e: Entry) -> RequestKey:
        return RequestKey(SCOPE, e.agent, TOOL, e.rid)

    # -- rules
    @rule(
        agent=st.sampled_from(sorted(AGENTS)),
        amount=st.integers(1, 3000) | st.integers(1000, 3000),  # cents; the second half fills windows sooner
        approval=st.booleans(),
    )
    def reserve(self, agent: str, amount: int, approval: bool) -> None:
        before = copy.deepcopy(self.entries)
        self.sync_expiry()
        pol = AGENTS[agent]
        keys = model_keys(self.clock.now, pol.timezone)
        broken = [
            CODES[w]
            for w, limit in pol.window_limits().items()
            if limit is not None and self.used(agent, w, keys[w]) + amount > cents(limit)  # type: ignore[operator]
        ]
        self.seq += 1
        rid = f"r{self.seq}"
        try:
            begun = self.ledger.begin(
                RequestKey(SCOPE, agent, TOOL, rid),
                args_hash=rid,
                policy=pol,
                spend=Decimal(amount) / 100,
                currency="USD",
                needs_approval=approval,
                approval_ttl=TTL,
            )
        except Refused as exc:
            assert [v.code for v in exc.violations] == broken, (str(exc), broken)
            self.entries = before  # the refusal rolled the whole transaction back, its expiry sweep too
            return
        assert broken == [], f"ledger accepted {amount} for {agent} but the model expected {broken}"
        record = begun.record
        assert record.status == ("pending_approval" if approval else "executing")
        self.entries.append(
            Entry(
                rid,
                agent,
                amount,
                keys,
                "reserved",
                record.status,
                record.approval_id,
                "pending" if approval else None,
                self.clock.now + TTL,
            )
        )

    @precondition(lambda self: bool(self.with_status("executing")))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        e = data.draw(st.sampled_from(self.with_status("executing")))
        done = self.ledger.complete(self.key_of(e), {"rid": e.rid})
        assert done.status == "completed"
        e.state, e.status = "committed", "completed"

    @precondition(lambda self: bool(self.with_status("executing")))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        e = data.draw(st.sampled_from(self.with_status("executing")))
        self.ledger.abandon(self.key_of(e))
        assert self.ledger.peek_request(self.key_of(e)) is None
        e.state, e.status = "released", "abandoned"

    @precondition(lambda self: bool(self.live("pending")))
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        e = data.draw(st.sampled_from(self.live("pending")))
        self.sync_expiry()
        assert e.approval_id is not None
        approval = self.ledger.decide(e.approval_id, approve=True, by="ops", ttl=TTL)
        assert approval.status == "approved"
        e.approval, e.expires_at = "approved", self.clock.now + TTL

    @precondition(lambda self: bool(self.live("pending")))
    @rule(data=st.data())
    def deny(self, data: st.DataObject) -> None:
        e = data.draw(st.sampled_from(self.live("pending")))
        self.sync_expiry()
        assert e.approval_id is not None
        assert self.ledger.decide(e.approval_id, approve=False, by="ops", reason="no").status == "denied"
        e.approval, e.state, e.status = "denied", "released", "refused"
        record = self.ledger.peek_request(self.key_of(e))
        assert record is not None and record.status == "refused"
        assert record.result is not None and record.result["code"] == "approval_denied"

    @precondition(lambda self: bool(self.live("approved")))
    @rule(data=st.data())
    def execute_approved(self, data: st.DataObject) -> None:
        e = data.draw(st.sampled_from(self.live("approved")))
        self.sync_expiry()
        record = self.ledger.start_approved(self.key_of(e))
        assert record.status == "executing"
        e.approval, e.status = "used", "executing"

    @precondition(lambda self: any(e.approval_id and e not in self.live("pending") for e in self.entries))
    @rule(data=st.data())
    def decide_twice(self, data: st.DataObject) -> None:
        e = data.draw(st.sampled_from([e for e in self.entries if e.approval_id and e not in self.live("pending")]))
        assert e.approval_id is not None
        with pytest.raises(ValueError, match="already"):  # rolls back, so the model does not sweep either
            self.ledger.decide(e.approval_id, approve=True, by="ops")

    @rule(
        seconds=st.one_of(st.integers(1, 1200), st.integers(3600, 3 * 86400), st.integers(-7200, -1)),
        sweep=st.booleans(),
    )
    def advance(self, seconds: int, sweep: bool) -> None:
        """Move the clock (sometimes backwards); maybe sweep expiries now, else lazily on the next call."""
        self.clock.advance(seconds)
        if sweep:
            assert self.ledger.expire_now() == self.sync_expiry()

    # -- invariants
    @invariant()
    def totals_agree_and_stay_within_limits(self) -> None:
        stored: dict[tuple[str, str, str], tuple[int, int]] = {}
        for agent, win, wkey, reserved, committed in self.reader.execute(
            'SELECT agent, "window", window_key, reserved_minor, committed_minor FROM spend_totals WHERE scope = ?',
            (SCOPE,),
        ):
            if reserved or committed:
                stored[(agent, win, wkey)] = (reserved, committed)
        recomputed: dict[tuple[str, str, str], tuple[int, int]] = {}
        for win, column, group in (
            ("day", "day_key", "agent, day_key"),
            ("week", "week_key", "agent, week_key"),
            ("month", "month_key", "agent, month_key"),
            ("lifetime", "'all'", "agent"),
        ):
            for agent, wkey, reserved, committed in self.reader.execute(
                f"SELECT agent, {column}, SUM(CASE WHEN state = 'reserved' THEN amount_minor ELSE 0 END),"
                " SUM(CASE WHEN state = 'committed' THEN amount_minor ELSE 0 END)"
                f" FROM spend_entries WHERE scope = ? GROUP BY {group}",
                (SCOPE,),
            ):
                if reserved or committed:
                    recomputed[(agent, win, wkey)] = (reserved, committed)
        modelled: dict[tuple[str, str, str], tuple[int, int]] = {}
        for e in self.entries:
            if e.state == "released":
                continue
            for win in WINDOW_NAMES:
                r, c = modelled.get((e.agent, win, e.keys[win]), (0, 0))
                modelled[(e.agent, win, e.keys[win])] = (r + e.cents, c) if e.state == "reserved" else (r, c + e.cents)
        assert stored == recomputed == modelled
        for (agent, win, _), (reserved, committed) in stored.items():
            limit = cents(AGENTS[agent].window_limits()[win])
            assert limit is None or reserved + committed <= limit
        for agent in AGENTS:
            assert (
                self.ledger.reserved_total(SCOPE, agent)
                == Decimal(sum(e.cents for e in self.entries if e.agent == agent and e.state == "reserved")) / 100
            )
            assert (
                self.ledger.committed_total(SCOPE, agent)
                == Decimal(sum(e.cents for e in self.entries if e.agent == agent and e.state == "committed")) / 100
            )


def test_ledger_agrees_with_a_model(new_database_url: Callable[[], str]) -> None:
    """Random reserve/commit/release/approve/deny/expire sequences: the ledger and the model never disagree."""
    machine = type("Machine", (LedgerMachine,), {"new_database": staticmethod(new_database_url)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=300 if FULL else 30,
            stateful_step_count=60 if FULL else 30,
            deadline=None,
            database=None,
        ),
    )
