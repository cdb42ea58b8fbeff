"""Every money operation by name: how recovery and reconciliation rebuild one from its stored request."""

from __future__ import annotations

from collections.abc import Callable

from interlace_mcp.operations._base import Operation, OperationSpec
from interlace_mcp.operations._card_ops import CardTransfer, CloseCard, IssueCard
from interlace_mcp.operations._fund_ops import FundAccount
from interlace_mcp.operations._transfer_ops import CreateTransfer
from interlace_mcp.policy import RequestRecord

__all__ = ["MONEY_OPERATIONS", "operation_for"]

#: Spec name (the tool's name) -> how to rebuild the operation from its stored request.
MONEY_OPERATIONS: dict[str, tuple[OperationSpec, Callable[[RequestRecord], Operation]]] = {
    spec.name: (spec, build)
    for spec, build in (
        (IssueCard.SPEC, IssueCard.from_record),
        (CardTransfer.SPECS["in"], CardTransfer.from_record),
        (CardTransfer.SPECS["out"], CardTransfer.from_record),
        (CloseCard.SPEC, CloseCard.from_record),
        (CreateTransfer.SPEC, CreateTransfer.from_record),
        (FundAccount.SPEC, FundAccount.from_record),
    )
}


def operation_for(record: RequestRecord) -> Operation | None:
    """The operation a stored request belongs to (None for a name no operation has)."""
    entry = MONEY_OPERATIONS.get(record.key.tool)
    return entry[1](record) if entry is not None else None
