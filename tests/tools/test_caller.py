"""One caller per call: every policy check runs before any human is asked, and a money call writes twice."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from helpers import BOTH_BACKENDS, ServerFactory, call, refuse, runtime, sandbox_of

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])


class Human:
    """An elicitation callback that accepts and records every question it is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})


def transfers(sandbox_app: Any) -> list[dict[str, Any]]:
    return [m for m in sandbox_of(sandbox_app).snapshot()["movements"] if m["kind"] == "transfer_external"]


@MODES
async def test_a_tool_the_policy_does_not_allow_is_refused_without_asking_the_human(
    make_server: ServerFactory, sandbox_app: Any, mode: str
) -> None:
    """tools = [get_spend_status], confirm_above 10.00: create_transfer 20.00 is [tool_not_allowed], nobody asked."""
    policy = '[defaults]\ntools = ["get_spend_status"]\nconfirm_above = "10.00"\ntransfer_payees = ["sandbox-payee"]\n'
    human = Human()
    async with Client(make_server(policy=policy), mode=mode, elicitation_callback=human) as c:
        text = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "20.00", "request_id": "t"})
    assert text.startswith("[tool_not_allowed]") and "create_transfer" in text
    assert human.asked == []
    assert transfers(sandbox_app) == []


BAND = '[defaults]\nconfirm_above = "10.00"\n'
RULES = [
    ("per_transaction_limit", BAND + 'per_transaction = "15.00"\ntransfer_payees = ["sandbox-payee"]\n'),
    ("daily_limit", BAND + 'per_transaction = "100.00"\ndaily = "15.00"\ntransfer_payees = ["sandbox-payee"]\n'),
    ("payee_not_allowed", BAND + 'per_transaction = "100.00"\ntransfer_payees = []\n'),
]


@MODES
@pytest.mark.parametrize(("code", "policy"), RULES, ids=[r[0] for r in RULES])
async def test_a_call_any_rule_refuses_is_refused_without_asking_the_human(
    make_server: ServerFactory, sandbox_app: Any, mode: str, code: str, policy: str
) -> None:
    """In the confirmation band, a call that breaks a limit or the payee list is refused by name, never asked."""
    human = Human()
    async with Client(make_server(policy=policy), mode=mode, elicitation_callback=human) as c:
        refused = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "20.00", "request_id": "r"})
    assert refused.startswith(f"[{code}]"), refused
    assert human.asked == []
    assert transfers(sandbox_app) == []


async def test_a_frozen_agent_is_refused_without_asking_the_human(make_server: ServerFactory) -> None:
    """The kill switch is checked before the confirmation question too."""
    server = make_server(policy='[defaults]\nconfirm_above = "1.00"\n')
    runtime(server).ledger.set_agent_frozen("default", True, by="ops", reason="audit")
    human = Human()
    async with Client(server, elicitation_callback=human) as c:
        text = await refuse(c, "issue_card", {"amount": "5.00", "request_id": "f"})
    assert text.startswith("[agent_frozen]")
    assert human.asked == []


@BOTH_BACKENDS
async def test_a_money_call_opens_at_most_two_write_transactions(make_server: ServerFactory) -> None:
    """top_up_card: one transaction reserves (with the decision record), one commits (with the outcome record)."""
    server = make_server()
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        records = rt.audit.count()
        before = rt.store.transactions
        done = await call(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
        after = rt.store.transactions
    assert done["status"] == "completed" and done["card"]["balance"] == "6.00"
    assert after - before <= 2
    assert rt.audit.count() - records == 2  # the decision and the outcome, each with its ledger write
    assert rt.audit.verify().ok


async def test_concurrent_money_calls_still_write_at_most_twice_each(make_server: ServerFactory) -> None:
    """Ten agents' top-ups at once: never more than two write transactions per call (they may share some)."""
    server = make_server(policy='[defaults]\nper_transaction = "none"\ndaily = "none"\nmonthly = "none"\n')
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        before = rt.store.transactions
        results: list[dict[str, Any]] = []

        async def top_up(i: int) -> None:
            results.append(await call(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": f"t{i}"}))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(top_up, i)
        after = rt.store.transactions
    assert [r["status"] for r in results] == ["completed"] * 10
    assert after - before <= 20
