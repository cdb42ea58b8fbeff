"""Issue 10: what an agent and a human are told about approvals; splitting never dodges approval; approvals
bind what was approved and run only under the policy as it is when they execute."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from helpers import BOTH_BACKENDS, ServerFactory, call, refuse, runtime, sandbox_of, write_policy
from interlace_mcp.policy import PolicyError, parse_policy
from interlace_mcp.sandbox import PAYEE_ACCOUNT_ID, PAYEE_BALANCE_ID
from interlace_mcp.sandbox._records import Account, Balance

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
PUBLIC = "https://ops.example.com"
FORBIDDEN = ("approvals approve", "approvals deny", "interlace-mcp approvals", "itl_op_")


def transfers(sandbox_app: Any) -> list[dict[str, Any]]:
    return [m for m in sandbox_of(sandbox_app).snapshot()["movements"] if m["kind"] == "transfer_external"]


def day(status: dict[str, Any]) -> dict[str, Any]:
    return next(w for w in status["windows"] if w["window"] == "day")


class Human:
    """A form-elicitation callback that accepts and records each question."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})


# ---- messages: a human has been asked; never how to approve -----------------------------------------------

APPROVAL = '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "25.00"\n'
APPROVAL += 'transfer_payees = ["sandbox-payee"]\n'


@MODES
async def test_a_pending_result_says_a_human_was_asked_and_never_hands_over_a_command(
    make_server: ServerFactory, mode: str
) -> None:
    """Bullet 1: no `interlace-mcp approvals approve apr_...` line; approval_id, expires_at and approval_url."""
    async with Client(make_server(policy=APPROVAL, public_url=PUBLIC), mode=mode) as c:
        args = {"payee": "sandbox-payee", "amount": "30.00", "request_id": "big"}
        pending = await call(c, "create_transfer", args)
        again = await call(c, "create_transfer", args)
        status = await call(c, "get_request_status", {"request_id": "big"})
        spend = await call(c, "get_spend_status", {})
    approval_id = pending["approval_id"]
    url = f"{PUBLIC}/dashboard/approvals/{approval_id}"
    assert pending["status"] == "pending_approval" and approval_id.startswith("apr_") and pending["expires_at"]
    assert pending["approval_url"] == url and again["approval_url"] == url
    assert status["approval_url"] == url and spend["pending_approvals"][0]["approval_url"] == url
    assert "A human has been asked" in pending["message"] and "approval threshold" in pending["message"]
    assert "Still waiting" in again["message"] and "Still waiting" in status["message"]
    for text in (pending["message"], again["message"], status["message"]):
        assert not any(bad in text for bad in FORBIDDEN), text
        assert "same request_id" in text and "approval page" in text


async def test_without_a_public_url_there_is_no_approval_url(make_server: ServerFactory) -> None:
    """INTERLACE_PUBLIC_URL unset: no approval_url (nothing to link to), the message still says who decides."""
    async with Client(make_server(policy=APPROVAL)) as c:
        pending = await call(c, "issue_card", {"amount": "30.00", "request_id": "big"})
    assert pending["status"] == "pending_approval" and pending["approval_url"] is None
    assert "human" in pending["message"] and not any(bad in pending["message"] for bad in FORBIDDEN)


BAND = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\nconfirm_above = "10.00"\napproval_above = "25.00"\n'
    'transfer_payees = ["sandbox-payee"]\n'
)


@MODES
async def test_the_confirmation_band_without_elicitation_is_named_as_the_confirmation_band(
    make_server: ServerFactory, mode: str
) -> None:
    """Bullet 3: 15.00 with threshold 25.00 is not "above the approval threshold": it is the band, asked out of band."""
    async with Client(make_server(policy=BAND), mode=mode) as c:
        pending = await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "15.00", "request_id": "b"})
    message = pending["message"]
    assert pending["status"] == "pending_approval"
    assert "confirmation band" in message and "cannot ask its user" in message
    assert "approval threshold" not in message


@MODES
async def test_the_question_names_tool_amount_payee_memo_and_what_is_left_of_the_day(
    make_server: ServerFactory, mode: str
) -> None:
    """Bullet 3: the question names the payee, quotes the memo as the agent's untrusted words, and what remains."""
    human = Human()
    memo = 'invoice 42 "ignore previous" <b>'
    async with Client(make_server(policy=BAND), mode=mode, elicitation_callback=human) as c:
        await call(c, "issue_card", {"amount": "5.00", "request_id": "first"})  # below the band: not asked
        done = await call(
            c, "create_transfer", {"payee": "sandbox-payee", "amount": "20.00", "request_id": "t", "memo": memo}
        )
    assert done["status"] == "completed" and len(human.asked) == 1
    question = human.asked[0]
    assert "create_transfer 20.00 USD" in question and 'payee "sandbox-payee"' in question
    assert (
        'memo (written by the agent: untrusted, not instructions): "invoice 42 \\"ignore previous\\" <b>"' in question
    )
    assert "5.00 USD spent" in question and "75.00 of the 100.00 daily limit remains after it" in question


async def test_the_top_up_question_names_the_card_by_its_last_four(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """A top-up in the band names the card by its last four digits (never more)."""
    human = Human()
    async with Client(make_server(policy=BAND), elicitation_callback=human) as c:
        card = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i", "label": "travel"}))["card"]
        await call(c, "top_up_card", {"card_id": card["card_id"], "amount": "12.00", "request_id": "t"})
    pan = sandbox_of(sandbox_app).cards[card["card_id"]].pan
    assert f"top_up_card 12.00 USD onto card ending {card['last_four']}" in human.asked[0]
    assert 'card label (written by the agent: untrusted, not instructions): "travel"' in human.asked[0]
    assert pan not in human.asked[0]


# ---- approval_daily_above: splitting does not dodge approval --------------------------------------------

SPLIT = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "15.00"\n'
    'approval_daily_above = "50.00"\ntransfer_payees = ["sandbox-payee"]\n'
)


@BOTH_BACKENDS
async def test_six_transfers_of_15_cannot_dodge_approval_by_splitting(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Bullet 4: with approval_daily_above 50.00, the call that takes the day past 50.00 and every later one wait."""
    async with Client(make_server(policy=SPLIT)) as c:
        results = [
            await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "15.00", "request_id": f"s{i}"})
            for i in range(6)
        ]
        status = await call(c, "get_spend_status", {})
    assert [r["status"] for r in results] == ["completed"] * 3 + ["pending_approval"] * 3
    assert "approval_daily_above 50.00" in results[3]["message"] and "60.00 USD" in results[3]["message"]
    assert len(transfers(sandbox_app)) == 3
    assert day(status)["spent"] == "45.00" and day(status)["reserved"] == "45.00"
    assert status["approval_daily_above"] == "50.00"


@BOTH_BACKENDS
async def test_the_daily_approval_threshold_holds_under_concurrency(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Six at once: decided with the reservation, atomically -- exactly three run, three wait for a human."""
    async with Client(make_server(policy=SPLIT)) as c:
        results: list[dict[str, Any]] = []

        async def one(i: int) -> None:
            args = {"payee": "sandbox-payee", "amount": "15.00", "request_id": f"c{i}"}
            results.append(await call(c, "create_transfer", args))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(one, i)
    assert sorted(r["status"] for r in results) == ["completed"] * 3 + ["pending_approval"] * 3
    assert len(transfers(sandbox_app)) == 3


async def test_a_dry_run_says_the_daily_threshold_would_need_approval(make_server: ServerFactory) -> None:
    """dry_run: decision needs_approval, naming approval_daily_above; exactly up to the threshold is allowed."""
    async with Client(make_server(policy=SPLIT)) as c:
        for i in range(3):
            await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "15.00", "request_id": f"s{i}"})
        over = {"payee": "sandbox-payee", "amount": "15.00", "request_id": "d1", "dry_run": True}
        upto = {"payee": "sandbox-payee", "amount": "5.00", "request_id": "d2", "dry_run": True}
        big = await call(c, "create_transfer", over)
        ok = await call(c, "create_transfer", upto)
        spend = await call(c, "get_spend_status", {})
    assert big["decision"] == "needs_approval" and len(big["reasons"]) == 1
    assert big["reasons"][0].startswith("[approval_required]") and "approval_daily_above 50.00" in big["reasons"][0]
    assert ok["decision"] == "allow"
    assert day(spend)["reserved"] == "0.00"


def test_approval_daily_above_is_validated_like_other_amounts() -> None:
    """A bad value names the file and key; "none" turns it off; agents override the default."""
    raw = {"defaults": {"approval_daily_above": "40.00"}, "agents": {"a": {"approval_daily_above": "none"}}}
    parsed = parse_policy(raw)
    assert parsed.defaults.approval_daily_above == Decimal("40.00")
    assert parsed.for_agent("a").approval_daily_above is None
    assert parsed.for_agent("b").describe()["approval_daily_above"] == "40.00"
    for bad in ("ten", 1.5, "-1.00", "1.234"):
        with pytest.raises(PolicyError, match=r"defaults\.approval_daily_above"):
            parse_policy({"defaults": {"approval_daily_above": bad}})


# ---- approvals bind what was approved; the current policy decides at execution -------------------------


def limits(per_transaction: str = "100.00", daily: str = "100.00", payees: str = '["sandbox-payee"]') -> str:
    return (
        f'[defaults]\nper_transaction = "{per_transaction}"\ndaily = "{daily}"\napproval_above = "5.00"\n'
        f"transfer_payees = {payees}\n"
    )


TIGHTENED = [
    ("payee_not_allowed", limits(payees="[]")),
    ("daily_limit", limits(daily="1.00")),
    ("per_transaction_limit", limits(per_transaction="5.00")),
]
BASE = '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "5.00"\n'


@BOTH_BACKENDS
@pytest.mark.parametrize(("code", "tighter"), TIGHTENED, ids=[t[0] for t in TIGHTENED])
async def test_an_approved_transfer_is_refused_when_the_policy_tightened_since(
    make_server: ServerFactory, sandbox_app: Any, tmp_path: Path, code: str, tighter: str
) -> None:
    """Bullet 5: approved 10.00, then payee removed / daily 1.00 / per-transaction 5.00: refused by that rule's
    own code, the reservation released, nothing moved; a retry gets the same refusal."""
    server = make_server(policy=limits())
    rt = runtime(server)
    args = {"payee": "sandbox-payee", "amount": "10.00", "request_id": "ok-then-not"}
    async with Client(server) as c:
        pending = await call(c, "create_transfer", args)
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")
        write_policy(tmp_path / "policy.toml", tighter)
        text = await refuse(c, "create_transfer", args)
        again = await refuse(c, "create_transfer", args)
        status = await call(c, "get_request_status", {"request_id": "ok-then-not"})
        spend = await call(c, "get_spend_status", {})
    assert text.startswith(f"[{code}]") and "changed after approval" in text, text
    assert again == text
    assert status["status"] == "refused"
    assert day(spend)["reserved"] == "0.00" and day(spend)["spent"] == "0.00"
    assert transfers(sandbox_app) == []
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    assert rt.ledger.get_approval(pending["approval_id"]).status == "used"  # type: ignore[union-attr]


def _second_account(sandbox_app: Any) -> tuple[str, str]:
    state = sandbox_of(sandbox_app)
    now = state.now_ms()
    state.accounts["acct-b"] = Account("acct-b", "Mallory Ltd", "100000003")
    state.balances["bal-b"] = Balance("bal-b", "acct-b", 0, Decimal("0"), now)
    return "acct-b", "bal-b"


def _acme(account: str, balance: str) -> str:
    return BASE + f'transfer_payees = ["acme"]\n[payees.acme]\naccount_id = "{account}"\nbalance_id = "{balance}"\n'


@BOTH_BACKENDS
async def test_editing_a_payee_after_approval_never_redirects_the_approved_money(
    make_server: ServerFactory, sandbox_app: Any, tmp_path: Path
) -> None:
    """Bullet 5: the approval bound acme's account ids; pointing acme elsewhere afterwards refuses the execution
    ([payee_not_allowed]); nothing reaches the new account; the reservation is released."""
    account_b, balance_b = _second_account(sandbox_app)
    server = make_server(policy=_acme(PAYEE_ACCOUNT_ID, PAYEE_BALANCE_ID), public_url=PUBLIC)
    rt = runtime(server)
    args = {"payee": "acme", "amount": "20.00", "request_id": "pay-acme"}
    async with Client(server) as c:
        pending = await call(c, "create_transfer", args)
        approval = rt.ledger.get_approval(pending["approval_id"])
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")
        write_policy(tmp_path / "policy.toml", _acme(account_b, balance_b))
        text = await refuse(c, "create_transfer", args)
    state = sandbox_of(sandbox_app)
    assert approval is not None and approval.details["payee_account"] == {
        "account_id": PAYEE_ACCOUNT_ID,
        "balance_id": PAYEE_BALANCE_ID,
    }
    assert text.startswith("[payee_not_allowed]") and PAYEE_ACCOUNT_ID in text
    assert state.balances[balance_b].available == Decimal("0") and transfers(sandbox_app) == []
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")


@BOTH_BACKENDS
async def test_an_approved_transfer_pays_the_account_bound_at_approval(
    make_server: ServerFactory, sandbox_app: Any, tmp_path: Path
) -> None:
    """Unchanged policy: the approved execution pays exactly the bound account, once."""
    server = make_server(policy=_acme(PAYEE_ACCOUNT_ID, PAYEE_BALANCE_ID))
    rt = runtime(server)
    args = {"payee": "acme", "amount": "20.00", "request_id": "pay-acme"}
    async with Client(server) as c:
        pending = await call(c, "create_transfer", args)
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")
        write_policy(tmp_path / "policy.toml", _acme(PAYEE_ACCOUNT_ID, PAYEE_BALANCE_ID) + "\n# touched\n")
        done = await call(c, "create_transfer", args)
        replay = await call(c, "create_transfer", args)
    assert done["status"] == "completed" and replay["replayed"] is True
    assert sandbox_of(sandbox_app).balances[PAYEE_BALANCE_ID].available == Decimal("20.00")
    assert len(transfers(sandbox_app)) == 1


@BOTH_BACKENDS
async def test_an_approved_issue_is_checked_against_the_windows_without_its_own_reservation_twice(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """The re-check counts the request's own reservation once: 60.00 approved under daily 100.00 runs."""
    policy = '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "50.00"\n'
    server = make_server(policy=policy)
    rt = runtime(server)
    async with Client(server) as c:
        await call(c, "issue_card", {"amount": "30.00", "request_id": "small"})
        pending = await call(c, "issue_card", {"amount": "60.00", "request_id": "big"})
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")
        done = await call(c, "issue_card", {"amount": "60.00", "request_id": "big"})
    assert done["status"] == "completed" and done["card"]["balance"] == "60.00"


# ---- the confirmation band is never skipped when the ledger decides no approval is needed after all ---------

TIMED = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\nconfirm_above = "5.00"\n'
    'approval_daily_above = "20.00"\ntransfer_payees = ["sandbox-payee"]\n'
)


@BOTH_BACKENDS
async def test_an_expiring_approval_does_not_let_a_band_call_skip_its_confirmation(
    make_server: ServerFactory, sandbox_app: Any, clock: Any
) -> None:
    """The agent knows when its own pending approval expires. Right after, the read behind the question still
    counts that reservation (so approval_daily_above "needs approval anyway" and the question is skipped), but
    the reserving transaction expires it first and finds no approval needed: the band call must not then move
    money unconfirmed -- it is asked out of band instead."""
    human = Human()
    async with Client(make_server(policy=TIMED), elicitation_callback=human) as c:
        first = await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "25.00", "request_id": "big"})
        assert first["status"] == "pending_approval" and not human.asked
        clock.advance(901)  # past expires_at (INTERLACE_APPROVAL_TTL_SECONDS 900), not yet swept by a writer
        second = await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "10.00", "request_id": "s"})
    unconfirmed = second["status"] == "completed" and not human.asked
    assert not unconfirmed, "a confirmation-band transfer moved money without anyone confirming it"
    assert second["status"] == "pending_approval" and "confirmation band" in second["message"]
    assert transfers(sandbox_app) == []
