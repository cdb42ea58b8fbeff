"""Business transfers: between Infinity balances (same account or another one), and from a
CryptoConnect wallet into the Infinity Account (stablecoin -> USD at 1:1)."""

from __future__ import annotations

from decimal import Decimal

from ._base import StateBase
from ._records import CURRENCY, STABLECOINS, Movement, SandboxError, Transfer, bad, insufficient, not_found

__all__ = ["TransfersMixin"]


class TransfersMixin(StateBase):
    """``POST /business/transfer/internal`` and ``/external``."""

    def business_transfer(
        self,
        account_id: str,
        *,
        external: bool,
        client_transaction_id: str,
        amount: Decimal,
        from_balance_id: str,
        from_account_id: str,
        to_balance_id: str,
        to_account_id: str,
        from_business_type: int = 0,
        from_currency: str = CURRENCY,
        to_business_type: int = 0,
        to_currency: str = CURRENCY,
    ) -> Transfer:
        """Move money; a repeated clientTransactionId (per endpoint) returns the original transfer."""
        endpoint = "external" if external else "internal"
        key = (account_id, endpoint, client_transaction_id)
        original = self._dedupe(key)
        if original is not None:
            return self.transfers[original]
        if from_account_id != account_id:
            raise SandboxError(403, "403001", "from.accountId is not your account")
        if (from_business_type, to_business_type) not in ((0, 0), (2, 0)):
            raise bad(
                "the emulator moves money Infinity -> Infinity (businessType 0 -> 0) and "
                "CryptoConnect wallet -> Infinity (2 -> 0) only"
            )
        if to_currency != CURRENCY or (from_business_type == 0 and from_currency != CURRENCY):
            raise bad("an Infinity balance holds USD only")
        if from_business_type == 2:
            if external:
                raise bad("a CryptoConnect wallet moves money within its account: use /business/transfer/internal")
            transfer = self._from_wallet(
                account_id, amount, wallet_id=from_balance_id, currency=from_currency, to_balance_id=to_balance_id
            )
        else:
            transfer = self._between_balances(
                account_id,
                external=external,
                client_transaction_id=client_transaction_id,
                amount=amount,
                from_balance_id=from_balance_id,
                to_balance_id=to_balance_id,
                to_account_id=to_account_id,
            )
        transfer.client_transaction_id = client_transaction_id
        self.transfers[transfer.id] = transfer
        self.client_txn[key] = transfer.id
        kind = "wallet_to_infinity" if from_business_type == 2 else f"transfer_{endpoint}"
        self.movements.append(Movement(kind, client_transaction_id, amount))
        return transfer

    def _between_balances(
        self,
        account_id: str,
        *,
        external: bool,
        client_transaction_id: str,
        amount: Decimal,
        from_balance_id: str,
        to_balance_id: str,
        to_account_id: str,
    ) -> Transfer:
        if external:
            if to_account_id == account_id:
                raise bad("external transfers go to another account; use /business/transfer/internal")
            if to_account_id not in self.accounts:
                raise not_found("account")
        elif to_account_id != account_id:
            raise bad("internal transfers stay within accountId")
        source = self.balances.get(from_balance_id)
        if source is None or source.account_id != account_id or source.object_type != 0:
            raise not_found("balance")
        target = self.balances.get(to_balance_id)
        if target is None or target.account_id != to_account_id or target.object_type != 0:
            raise not_found("balance")
        if source.id == target.id:
            raise bad("from and to are the same balance")
        if source.available < amount:
            raise insufficient()
        source.available -= amount
        target.available += amount
        return Transfer(
            id=self._new_snowflake(),
            seq=self._next_seq(),
            account_id=account_id,
            client_transaction_id=client_transaction_id,
            transfer_type="DIFFERENT_ACCOUNT" if external else "SAME_ACCOUNT",
            amount=amount,
            create_time=self.now_ms(),
            from_balance_id=source.id,
            from_account_id=source.account_id,
            to_balance_id=target.id,
            to_account_id=target.account_id,
        )

    def _from_wallet(
        self, account_id: str, amount: Decimal, *, wallet_id: str, currency: str, to_balance_id: str
    ) -> Transfer:
        """CryptoConnect wallet (USDC/USDT) -> this account's Infinity balance (USD), rate 1."""
        if currency not in STABLECOINS:
            raise bad(f"from.currency must be one of {', '.join(STABLECOINS)} for a CryptoConnect wallet")
        wallet = self.get_wallet(account_id, wallet_id)
        target = self.balances.get(to_balance_id)
        if target is None or target.account_id != account_id or target.object_type != 0:
            raise not_found("balance")
        if wallet.available.get(currency, Decimal(0)) < amount:
            raise insufficient()
        wallet.available[currency] -= amount
        target.available += amount
        return Transfer(
            id=self._new_snowflake(),
            seq=self._next_seq(),
            account_id=account_id,
            client_transaction_id="",
            transfer_type="SAME_ACCOUNT",
            amount=amount,
            create_time=self.now_ms(),
            from_balance_id=wallet.id,
            from_account_id=account_id,
            to_balance_id=target.id,
            to_account_id=account_id,
            from_business_type=2,
            from_currency=currency,
        )
