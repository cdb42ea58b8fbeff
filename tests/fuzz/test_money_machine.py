"""A Hypothesis state machine over client + ledger + emulator with injected faults.

Rules: top-ups, transfers, withdrawals and fundings with random amounts and request ids (new ones, the same one
again with the same arguments, or with different ones), switching faults on and off on the money paths
and on the card read after a load, and retrying requests left in progress. After every step:

- no window limit is exceeded (ledger spent + reserved <= limit, the funding window's too) and no single
  movement tops per_transaction;
- every movement that left the Infinity account is in the ledger, committed or still reserved, and
  every committed one happened: committed <= upstream <= committed + reserved (funding likewise);
- no clientTransactionId moved twice; every answer is a movement or a ``[known_code]`` refusal, and
  agrees with the request's stored state (replays, conflicts).

At the end the agent retries until nothing is in progress (what stays unknown is settled by the same
lookup startup recovery does): ledger committed == upstream, nothing reserved, reconcile clean.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio.from_thread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from mcp import Client

from fuzz.support import FULL, KNOWN_CODES, V3, error_code, movements_by_key, upstream_spend
from helpers import Clock
from interlace_mcp.app import Runtime, reconcile, recover
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import SandboxState, create_sandbox_app
from interlace_mcp.server import build_server

PER_TRANSACTION = Decimal("30.00")
DAILY = Decimal("60.00")
FUND_DAILY = Decimal("80.00")
POLICY = f"""\
[defaults]
per_transaction = "{PER_TRANSACTION}"
daily = "{DAILY}"
monthly = "none"
max_active_cards = 3
transfer_payees = ["sandbox-payee"]
fund_daily = "{FUND_DAILY}"
"""
SETUP_LOAD = Decimal("10.00")
MONEY_PATHS = [
    f"{V3}/cards/transfer-in",
    f"{V3}/cards/transfer-out",
    f"{V3}/business/transfer/external",
    f"{V3}/business/transfer/internal",
]

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("45.00"), places=2)
#: A fault switched on right before a call: (kind, status, times); 4+ times outlasts the client's attempts.
faults = st.none() | st.tuples(
    st.sampled_from(["error", "fail_after_commit"]), st.sampled_from([500, 502, 503]), st.integers(1, 8)
)


class MoneyMachine(RuleBasedStateMachine):
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix="money-machine-"))
        self.stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        (self.tmp / "policy.toml").write_text(POLICY, encoding="utf-8")
        self.app = create_sandbox_app()
        values: dict[str, Any] = {
            "state_dir": self.tmp / "state",
            "database_url": f"sqlite:///{self.tmp / 'ledger.sqlite3'}",
            "policy_file": self.tmp / "policy.toml",
            "rate_limit_per_minute": 1_000_000,
            "reconcile_interval_seconds": 0,
        }
        self.ledger = Ledger(self.tmp / "ledger.sqlite3", clock=Clock())
        self.stack.callback(self.ledger.close)
        self.server = build_server(
            Settings(_env_file=None, **values),  # type: ignore[call-arg]
            sandbox_app=self.app,
            ledger=self.ledger,
            backoff=False,
        )
        self.rt: Runtime = self.server.interlace_runtime  # type: ignore[attr-defined]
        self.portal = self.stack.enter_context(anyio.from_thread.start_blocking_portal())
        self.client: Client = self.stack.enter_context(self.portal.wrap_async_context_manager(Client(self.server)))
        self.card_id = ""
        #: (tool, request_id) -> the arguments of the stored request (while Interlace or the ledger knows it).
        self.known: dict[tuple[str, str], dict[str, Any]] = {}
        self.completed: dict[tuple[str, str], dict[str, Any]] = {}
        self.counter = 0

    @property
    def sandbox(self) -> SandboxState:
        state = self.app.state.sandbox
        assert isinstance(state, SandboxState)
        return state

    # ---- calls -----------------------------------------------------------------------------------

    def call(self, tool: str, args: dict[str, Any]) -> tuple[str, Any]:
        result = self.portal.call(self.client.call_tool, tool, args)
        if result.is_error:
            text = result.content[0].text  # type: ignore[union-attr]
            code = error_code(text)
            assert code in KNOWN_CODES, text
            return "refused", code
        body = result.structured_content
        assert body is not None
        assert body["status"] in ("completed", "in_progress"), body
        return body["status"], body

    def stored_status(self, tool: str, request_id: str) -> str | None:
        """completed / in_progress, or None when this agent+tool has no record of the request."""
        records = self.ledger.find_requests(self.rt.scope, "default", request_id)
        mine = [r for r in records if r.key.tool == tool]
        if not mine:
            return None
        return "completed" if mine[0].status == "completed" else "in_progress"

    def money(self, tool: str, args: dict[str, Any]) -> str:
        """One call, checked against the model of stored requests; returns the request_id."""
        request_id = args["request_id"]
        key = (tool, request_id)
        before = self.known.get(key)
        outcome, body = self.call(tool, args)
        if before is not None and before != args:
            assert (outcome, body) == ("refused", "request_id_conflict"), (key, before, args, body)
            return str(request_id)
        if key in self.completed:
            assert outcome == "completed" and body["replayed"] is True, body
            assert body["transaction_id"] == self.completed[key]["transaction_id"]
        spends = tool not in ("withdraw_from_card", "fund_account")  # unloads and funding are not spend
        if outcome != "refused" and Decimal(args["amount"]) > PER_TRANSACTION and spends:
            raise AssertionError(f"{tool} of {args['amount']} passed per_transaction {PER_TRANSACTION}")
        stored = self.stored_status(tool, request_id)
        if outcome == "refused":
            assert body != "request_id_conflict", (key, before, args)
            assert stored in (None, "in_progress"), (key, body, stored)
        else:
            assert stored == outcome, (key, outcome, stored)
        if stored is None:
            self.known.pop(key, None)
        else:
            self.known[key] = args
        if outcome == "completed":
            self.completed.setdefault(key, body)
        return str(request_id)

    def inject(self, path: str, fault: tuple[str, int, int] | None) -> None:
        if fault is not None:
            kind, status, times = fault
            self.sandbox.add_fault(path, kind, status=status, times=times)

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    # ---- rules -----------------------------------------------------------------------------------

    @initialize()
    def issue_the_card(self) -> None:
        outcome, body = self.call("issue_card", {"amount": str(SETUP_LOAD), "request_id": "setup"})
        assert outcome == "completed", body
        self.card_id = body["card"]["card_id"]

    @rule(target=requests, amount=amounts, fault=faults)
    def top_up(self, amount: Decimal, fault: tuple[str, int, int] | None) -> tuple[str, dict[str, Any]]:
        self.inject(f"{V3}/cards/transfer-in", fault)
        args = {"card_id": self.card_id, "amount": str(amount), "request_id": self.new_id("top")}
        self.money("top_up_card", args)
        return "top_up_card", args

    @rule(target=requests, amount=amounts, fault=faults)
    def transfer(self, amount: Decimal, fault: tuple[str, int, int] | None) -> tuple[str, dict[str, Any]]:
        self.inject(f"{V3}/business/transfer/external", fault)
        args = {"payee": "sandbox-payee", "amount": str(amount), "request_id": self.new_id("pay")}
        self.money("create_transfer", args)
        return "create_transfer", args

    @rule(target=requests, amount=amounts, fault=faults)
    def withdraw(self, amount: Decimal, fault: tuple[str, int, int] | None) -> tuple[str, dict[str, Any]]:
        self.inject(f"{V3}/cards/transfer-out", fault)
        args = {"card_id": self.card_id, "amount": str(amount), "request_id": self.new_id("out")}
        self.money("withdraw_from_card", args)
        return "withdraw_from_card", args

    @rule(target=requests, amount=amounts, fault=faults)
    def fund(self, amount: Decimal, fault: tuple[str, int, int] | None) -> tuple[str, dict[str, Any]]:
        self.inject(f"{V3}/business/transfer/internal", fault)
        args = {"amount": str(amount), "request_id": self.new_id("fund")}
        self.money("fund_account", args)
        return "fund_account", args

    @rule(request=requests, same=st.booleans(), amount=amounts)
    def reuse_request_id(self, request: tuple[str, dict[str, Any]], same: bool, amount: Decimal) -> None:
        """The same request_id again: with the same arguments (replay / resume / fresh start once forgotten),
        or with another amount (a conflict while the request is stored)."""
        tool, args = request
        self.money(tool, args if same else {**args, "amount": str(amount)})

    @rule(
        path=st.sampled_from([*MONEY_PATHS, "card-summary"]),
        kind=st.sampled_from(["error", "fail_after_commit"]),
        status=st.sampled_from([500, 502, 503]),
        times=st.integers(min_value=1, max_value=6),
    )
    def set_fault(self, path: str, kind: str, status: int, times: int) -> None:
        if path == "card-summary":
            path = f"{V3}/cards/{self.card_id}/card-summary"
        self.sandbox.add_fault(path, kind, status=status, times=times)

    @rule()
    def clear_faults(self) -> None:
        self.sandbox.clear_faults()

    @rule()
    def retry_pending(self) -> None:
        for (tool, _), args in list(self.known.items()):
            if (tool, args["request_id"]) not in self.completed:
                self.money(tool, args)

    # ---- invariants ------------------------------------------------------------------------------

    @invariant()
    def limits_hold(self) -> None:
        policy = self.rt.policies.for_agent("default")
        for window in self.ledger.window_status(self.rt.scope, "default", policy):
            if window.limit is not None:
                assert window.spent + window.reserved <= window.limit, window
        for move in self.sandbox.snapshot()["movements"]:
            if move["kind"] in ("transfer_in", "transfer_external"):
                assert Decimal(move["amount"]) <= PER_TRANSACTION, move
        funding = self.ledger.fund_status(self.rt.scope, "default", policy)
        assert funding.funded + funding.reserved <= FUND_DAILY, funding

    @invariant()
    def ledger_brackets_upstream(self) -> None:
        snapshot = self.sandbox.snapshot()
        committed = self.ledger.committed_total(self.rt.scope)
        reserved = self.ledger.reserved_total(self.rt.scope)
        assert committed <= upstream_spend(snapshot) <= committed + reserved, (committed, reserved, snapshot)
        funded, held = self.ledger.fund_totals(self.rt.scope)
        assert funded <= Decimal(snapshot["funded_total"]) <= funded + held, (funded, held, snapshot)
        twice = {k: n for k, n in movements_by_key(snapshot).items() if n > 1}
        assert not twice, twice

    # ---- the end ---------------------------------------------------------------------------------

    def settle(self) -> None:
        self.sandbox.clear_faults()
        for _ in range(3):
            self.retry_pending()
        if self.ledger.open_requests(self.rt.scope):
            # What a retry cannot finish (an earlier attempt failed definitively after it may have
            # been sent) is settled by lookup, as startup recovery and the timer do.
            self.portal.call(lambda: recover(self.rt, grace=0))
        assert self.ledger.open_requests(self.rt.scope) == []
        snapshot = self.sandbox.snapshot()
        assert self.ledger.reserved_total(self.rt.scope) == Decimal("0")
        assert self.ledger.committed_total(self.rt.scope) == upstream_spend(snapshot)
        assert self.ledger.fund_totals(self.rt.scope) == (Decimal(snapshot["funded_total"]), Decimal("0"))
        report = self.portal.call(lambda: reconcile(self.rt))
        assert report.ok, [d.detail for d in report.differences]

    def teardown(self) -> None:
        try:
            if self.card_id:
                self.settle()
        finally:
            self.stack.close()


def test_money_machine() -> None:
    run_state_machine_as_test(
        MoneyMachine,
        settings=settings(
            max_examples=100 if FULL else 10,
            stateful_step_count=50 if FULL else 20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
