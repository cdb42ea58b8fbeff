"""The confirmation band: asked in the client between confirm_above and approval_above, never above."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from helpers import ServerFactory, call, refuse, sandbox_of

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
POLICY = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\nconfirm_above = "10.00"\n'
    'approval_above = "25.00"\ntransfer_payees = ["sandbox-payee"]\n'
)


class Human:
    """An elicitation callback that answers with ``action`` and records each question."""

    def __init__(self, action: str, confirm: bool = True) -> None:
        self.action, self.confirm, self.asked = action, confirm, []  # type: ignore[var-annotated]

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        content = {"confirm": self.confirm} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)  # type: ignore[arg-type]


def transfers(sandbox_app: Any) -> list[dict[str, Any]]:
    return [m for m in sandbox_of(sandbox_app).snapshot()["movements"] if m["kind"] == "transfer_external"]


@MODES
async def test_accepted_confirmation_executes_once_and_replays_without_asking(
    make_server: ServerFactory, sandbox_app: Any, mode: str
) -> None:
    """20.00 is in the band: asked once, accepted, moved once; the replay asks nothing."""
    human = Human("accept")
    async with Client(make_server(policy=POLICY), mode=mode, elicitation_callback=human) as c:
        args = {"payee": "sandbox-payee", "amount": "20.00", "request_id": "mid"}
        done = await call(c, "create_transfer", args)
        again = await call(c, "create_transfer", args)
    assert done["status"] == "completed" and again["replayed"] is True
    assert len(human.asked) == 1 and "20.00 USD" in human.asked[0]
    assert len(transfers(sandbox_app)) == 1


@MODES
@pytest.mark.parametrize(("action", "confirm"), [("decline", True), ("cancel", True), ("accept", False)])
async def test_declined_confirmation_moves_nothing(
    make_server: ServerFactory, sandbox_app: Any, mode: str, action: str, confirm: bool
) -> None:
    """Decline, cancel, or an unticked box: refused as confirmation_declined, nothing reserved or moved."""
    async with Client(make_server(policy=POLICY), mode=mode, elicitation_callback=Human(action, confirm)) as c:
        text = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "20.00", "request_id": "no"})
        status = await call(c, "get_spend_status", {})
    assert text.startswith("[confirmation_declined]")
    assert transfers(sandbox_app) == []
    day = next(w for w in status["windows"] if w["window"] == "day")
    assert day["reserved"] == "0.00" and day["spent"] == "0.00"


@MODES
async def test_outside_the_band_nothing_is_asked(make_server: ServerFactory, mode: str) -> None:
    """5.00 runs without a question; 30.00 needs out-of-band approval and is not asked in the client."""
    human = Human("accept")
    async with Client(make_server(policy=POLICY), mode=mode, elicitation_callback=human) as c:
        small = await call(c, "issue_card", {"amount": "5.00", "request_id": "small"})
        big = await call(c, "issue_card", {"amount": "30.00", "request_id": "big"})
    assert small["status"] == "completed"
    assert big["status"] == "pending_approval"
    assert human.asked == []


@MODES
async def test_client_without_elicitation_falls_back_to_approval(make_server: ServerFactory, mode: str) -> None:
    """A client that cannot be asked never gets an automatic yes: the band becomes a pending approval."""
    async with Client(make_server(policy=POLICY), mode=mode) as c:
        card = await call(c, "issue_card", {"amount": "20.00", "request_id": "band"})
    assert card["status"] == "pending_approval" and card["approval_id"]
