"""The Interlace wire formats we could not confirm, each behind one adapter (docs/wire-contract.md).

Every class here states what was found and what is guessed. When Interlace confirms a format, the fix
is one edit in one class; nothing else in the client (or above it) knows these paths or field names.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Protocol

from ._errors import ValidationError
from ._models import CardSpendControls, CryptoWallet, SpendControlRule, WalletAddress

__all__ = ["DEPOSIT_CHAINS", "STABLECOINS", "DepositAddressAdapter", "SpendControlsAdapter"]

#: The stablecoins a CryptoConnect wallet holds and funds the Infinity account with (1:1 to USD).
STABLECOINS: Final = ("USDC", "USDT")
#: Chains a deposit address may be on: the EVM chains of Interlace's "sandbox supported chains and
#: currencies" page (Ethereum, Arbitrum, Base, BSC, Polygon, Optimism, Avalanche). The codes beyond ETH and
#: ARB are **unconfirmed** (emulator choice); Solana, also listed there, is left out until its code is known.
DEPOSIT_CHAINS: Final = ("ETH", "ARB", "BASE", "BSC", "POLYGON", "OP", "AVAX")

_MCC_RE: Final = re.compile(r"[0-9]{4}")
_MAX_MCCS: Final = 100


class _Api(Protocol):
    """What an adapter needs from the client: one authenticated call (accountId added) returning ``data``."""

    def __call__(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> Awaitable[object]: ...


def _mcc_list(values: Iterable[str], name: str) -> list[str]:
    items = list(values)
    if len(items) > _MAX_MCCS:
        raise ValidationError(f"{name} has more than {_MAX_MCCS} merchant categories")
    for value in items:
        if not isinstance(value, str) or not _MCC_RE.fullmatch(value):
            raise ValidationError(f"{name} entries must be 4-digit merchant category codes")
    return sorted(set(items))


class SpendControlsAdapter:
    """Card spend controls: MCC allow / block lists pushed to one card. **Wire format partly guessed.**

    Found (developer.interlace.money/reference/consumptionscenarios, "Set Card BIN Spend Controls";
    .../reference/set-card-spend-controls, "Set card spend controls"): one rule per call with body
    fields ``usage`` (``MCC`` | ``SCENARIO`` | ``TRANSACTION_CURRENCY``), ``keywords`` (a 4-digit MCC
    for ``MCC``), ``id`` (int64: absent = insert, present = update), a list type
    ``BLACKLIST`` | ``WHITELIST``, ``cardBinIds`` (absent = every BIN), and for the card API the card
    ids; an ``Idempotency-Key`` header is required. A whitelist at any level allows only what it lists;
    declines use codes 1110 (MCC whitelist) and 1111 (MCC blacklist).

    Guessed (**unconfirmed: emulator choice**): the paths (``POST /cards/spend-controls``,
    ``GET /cards/spend-controls?cardId=``, ``DELETE /cards/spend-controls/{id}``), the name ``type``
    of the list-type field, ``cardIds`` for the cards, and the rule object the calls answer with.
    """

    SET_PATH: Final = "/cards/spend-controls"
    LIST_PATH: Final = "/cards/spend-controls"
    DELETE_PATH: Final = "/cards/spend-controls/{rule_id}"
    LIST_TYPE_FIELD: Final = "type"
    CARDS_FIELD: Final = "cardIds"

    def __init__(self, api: _Api, parse_rule: Callable[[object, str, str], SpendControlRule]) -> None:
        self._api = api
        self._parse_rule = parse_rule

    async def rules_for_card(self, card_id: str) -> list[SpendControlRule]:
        """Every rule that applies to the card (its own, its BIN's, the account's)."""
        data = await self._api("GET", self.LIST_PATH, params={"cardId": card_id, "limit": 100})
        items = data.get("list") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        return [self._parse_rule(item, "GET", self.LIST_PATH) for item in items]

    async def add_rule(self, card_id: str, *, usage: str, keywords: str, list_type: str) -> SpendControlRule:
        body: dict[str, object] = {
            "usage": usage,
            "keywords": keywords,
            self.LIST_TYPE_FIELD: list_type,
            self.CARDS_FIELD: [card_id],
        }
        data = await self._api("POST", self.SET_PATH, body=body, idempotency_key=str(uuid.uuid4()))
        return self._parse_rule(data, "POST", self.SET_PATH)

    async def delete_rule(self, rule_id: str) -> None:
        await self._api("DELETE", self.DELETE_PATH.format(rule_id=rule_id))

    async def get(self, card_id: str) -> CardSpendControls:
        rules = await self.rules_for_card(card_id)
        mcc = [r for r in rules if (r.usage or "").upper() == "MCC" and r.keywords]
        return CardSpendControls(
            card_id=card_id,
            mcc_allow=sorted({r.keywords or "" for r in mcc if (r.type or "").upper() == "WHITELIST"}),
            mcc_block=sorted({r.keywords or "" for r in mcc if (r.type or "").upper() == "BLACKLIST"}),
            rules=rules,
        )

    async def set_mcc_lists(self, card_id: str, *, allow: Iterable[str], block: Iterable[str]) -> CardSpendControls:
        """Make the card's *own* MCC rules exactly ``allow`` + ``block`` (BIN / account rules are left alone)."""
        wanted = {("WHITELIST", m) for m in _mcc_list(allow, "mcc_allow")}
        wanted |= {("BLACKLIST", m) for m in _mcc_list(block, "mcc_block")}
        own = [
            r
            for r in await self.rules_for_card(card_id)
            if (r.usage or "").upper() == "MCC" and r.card_ids == [card_id] and not r.card_bin_ids
        ]
        have = {((r.type or "").upper(), r.keywords or ""): r for r in own}
        for list_type, mcc in sorted(wanted - have.keys()):
            await self.add_rule(card_id, usage="MCC", keywords=mcc, list_type=list_type)
        for key in sorted(have.keys() - wanted):
            await self.delete_rule(have[key].id)
        return await self.get(card_id)


class DepositAddressAdapter:
    """Where stablecoins for a wallet can be sent. **Address creation is guessed.**

    Found (developer.interlace.money/docs/generate-a-wallet-address and .../crypto-connect-resources):
    ``GET /cryptoconnect/wallets/{id}`` (and the list with ``?accountId=``) return the wallet with
    ``balances`` and ``addresses`` ("deposit addresses ... used to receive funds of specific currencies
    on specific blockchain networks"); in Gateway mode master wallets exist after KYC.

    Guessed (**unconfirmed: emulator choice**): an address object's fields (``currency``, ``chain``,
    ``address``), and creating one with ``POST /cryptoconnect/wallets/{id}/addresses``
    ``{currency, chain}`` — the path exists in the v2.0 reference ("cryptoconnect-create-wallet-address",
    ``/open-api/v2/...``) and in a third-party Go SDK for v3; its body only in that SDK.
    """

    CREATE_PATH: Final = "/cryptoconnect/wallets/{wallet_id}/addresses"

    def __init__(self, api: _Api, parse_address: Callable[[object, str, str], WalletAddress]) -> None:
        self._api = api
        self._parse_address = parse_address

    @staticmethod
    def find(wallet: CryptoWallet, *, currency: str, chain: str) -> WalletAddress | None:
        """An address of ``wallet`` on ``chain`` for ``currency`` (an address with no currency fits any)."""
        chain_u, currency_u = chain.upper(), currency.upper()
        on_chain = [a for a in wallet.addresses if (a.chain or "").upper() == chain_u and a.address]
        exact = [a for a in on_chain if (a.currency or "").upper() == currency_u]
        loose = [a for a in on_chain if not a.currency]
        candidates = exact or loose
        return candidates[0] if candidates else None

    async def create(self, wallet_id: str, *, currency: str, chain: str, idempotency_key: str) -> WalletAddress:
        path = self.CREATE_PATH.format(wallet_id=wallet_id)
        data = await self._api(
            "POST", path, body={"currency": currency, "chain": chain}, idempotency_key=idempotency_key
        )
        return self._parse_address(data, "POST", path)
