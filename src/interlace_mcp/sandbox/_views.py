"""Wire views: the JSON objects the emulator answers with (docs/wire-contract.md), and the test snapshot.

PAN and CVV leave the state only through :meth:`ViewsMixin.card_details_view`, encrypted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._cards import CardsMixin
from ._crypto import encrypt_card_field
from ._records import (
    BILLING_ADDRESS,
    CURRENCY,
    STABLECOINS,
    ZERO,
    Account,
    Balance,
    Bin,
    Card,
    Cardholder,
    CardTransaction,
    CryptoDeposit,
    CryptoWallet,
    SpendRule,
    Transfer,
    WalletAddress,
    fmt,
    fmt_crypto,
)

__all__ = [
    "ViewsMixin",
    "deposit_view",
    "spend_rule_view",
    "transaction_view",
    "transfer_view",
    "wallet_view",
]


def transaction_view(tx: CardTransaction) -> dict[str, Any]:
    return {
        "id": tx.id,
        "accountId": tx.account_id,
        "cardId": tx.card_id,
        "cardholderId": tx.cardholder_id,
        "currency": CURRENCY,
        "amount": fmt(tx.amount),
        "fee": fmt(tx.fee),
        "feeDetails": [],
        "clientTransactionId": tx.client_transaction_id,
        "type": tx.type,
        "status": tx.status,
        "merchantName": tx.merchant_name,
        "mcc": tx.mcc,
        "merchantCity": tx.merchant_city,
        "merchantCountry": tx.merchant_country,
        "transactionTime": str(tx.create_time),
        "transactionCurrency": CURRENCY,
        "transactionAmount": fmt(tx.amount),
        "createTime": str(tx.create_time),
        "remark": tx.remark,
        "detail": tx.detail,
        "declineCode": tx.decline_code or None,
    }


def transfer_view(transfer: Transfer) -> dict[str, Any]:
    def side(balance_id: str, account_id: str, business_type: int, currency: str) -> dict[str, Any]:
        return {
            "id": balance_id,
            "transferId": transfer.id,
            "accountId": account_id,
            "amount": fmt(transfer.amount),
            "rate": "1",
            "currency": currency,
            "businessType": business_type,
            "fees": [],
        }

    return {
        "id": transfer.id,
        "clientTransactionId": transfer.client_transaction_id,
        "status": transfer.status,
        "accountTransferType": transfer.transfer_type,
        "amount": fmt(transfer.amount),
        "currency": transfer.from_currency,
        "createTime": str(transfer.create_time),
        "from": side(
            transfer.from_balance_id, transfer.from_account_id, transfer.from_business_type, transfer.from_currency
        ),
        "to": side(transfer.to_balance_id, transfer.to_account_id, transfer.to_business_type, transfer.to_currency),
    }


def address_view(address: WalletAddress) -> dict[str, Any]:
    return {
        "id": address.id,
        "currency": address.currency,
        "chain": address.chain,
        "address": address.address,
        "createTime": str(address.create_time),
    }


def wallet_view(wallet: CryptoWallet) -> dict[str, Any]:
    return {
        "id": wallet.id,
        "referenceId": wallet.reference_id,
        "accountId": wallet.account_id,
        "nickname": wallet.nickname,
        "master": wallet.master,
        "createTime": str(wallet.create_time),
        "balances": [
            {
                "currency": currency,
                "available": fmt_crypto(wallet.available.get(currency, ZERO)),
                "frozen": fmt_crypto(wallet.frozen.get(currency, ZERO)),
            }
            for currency in STABLECOINS
        ],
        "addresses": [address_view(a) for a in wallet.addresses],
    }


def deposit_view(deposit: CryptoDeposit) -> dict[str, Any]:
    return {
        "id": deposit.id,
        "walletId": deposit.wallet_id,
        "currency": deposit.currency,
        "chain": deposit.chain,
        "address": deposit.address,
        "amount": fmt_crypto(deposit.amount),
        "txHash": deposit.tx_hash,
        "status": "CLOSED",
        "createTime": str(deposit.create_time),
    }


def spend_rule_view(rule: SpendRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "accountId": rule.account_id,
        "usage": rule.usage,
        "keywords": rule.keywords,
        "type": rule.list_type,
        "cardIds": list(rule.card_ids),
        "cardBinIds": list(rule.card_bin_ids),
        "createTime": str(rule.create_time),
    }


class ViewsMixin(CardsMixin):
    """The objects of the wire contract, built from the state's records."""

    transaction_view = staticmethod(transaction_view)
    transfer_view = staticmethod(transfer_view)
    wallet_view = staticmethod(wallet_view)
    deposit_view = staticmethod(deposit_view)
    spend_rule_view = staticmethod(spend_rule_view)

    @staticmethod
    def account_view(account: Account) -> dict[str, Any]:
        return {
            "id": account.id,
            "status": account.status,
            "type": account.type,
            "name": account.name,
            "displayId": account.display_id,
        }

    @staticmethod
    def bin_view(bin_: Bin) -> dict[str, Any]:
        return {
            "id": bin_.id,
            "bin": bin_.bin,
            "type": bin_.type,
            "currencies": [CURRENCY],
            "network": bin_.network,
            "supportPhysicalCard": bin_.support_physical_card,
        }

    @staticmethod
    def cardholder_view(holder: Cardholder) -> dict[str, Any]:
        return {
            "id": holder.id,
            "status": holder.status,
            "firstName": holder.first_name,
            "lastName": holder.last_name,
            "userName": f"{holder.first_name} {holder.last_name}",
            "email": holder.email,
            "cardBinList": list(holder.card_bin_list),
        }

    @staticmethod
    def balance_view(balance: Balance) -> dict[str, Any]:
        return {
            "id": balance.id,
            "accountId": balance.account_id,
            "createTime": str(balance.create_time),
            "currency": CURRENCY,
            "walletType": 0,
            "objectType": balance.object_type,
            "available": fmt(balance.available),
        }

    def card_view(self, card: Card) -> dict[str, Any]:
        limits: list[dict[str, Any]] = []
        if card.velocity_type is not None and card.velocity_limit is not None:
            limits.append({"type": card.velocity_type, "value": fmt(card.velocity_limit), "currency": CURRENCY})
        return {
            "id": card.id,
            "accountId": card.account_id,
            "status": card.status,
            "currency": CURRENCY,
            "bin": card.bin,
            "userName": card.user_name,
            "cardLastFour": card.pan[-4:],
            "cardMode": card.card_mode,
            "label": card.label,
            "referenceId": card.reference_id,
            "cardholderId": card.cardholder_id,
            "balanceId": card.balance_id,
            "budgetId": "",
            "createTime": str(card.create_time),
            "billingAddress": dict(BILLING_ADDRESS),
            "transactionLimits": limits,
        }

    def card_details_view(self, card: Card, secret: str) -> dict[str, Any]:
        view = self.card_view(card)
        view["cardNumber"] = encrypt_card_field(card.pan, secret)
        view["cvv"] = encrypt_card_field(card.cvv, secret)
        view["expiryDate"] = card.expiry
        return view

    def card_summary_view(self, card: Card) -> dict[str, Any]:
        balance = self.card_balance(card)
        consumption = self._consumption(card.id)
        velocity: dict[str, Any] | None = None
        available = self.velocity_available(card)
        if card.velocity_type is not None and card.velocity_limit is not None and available is not None:
            velocity = {
                "type": card.velocity_type,
                "limit": fmt(card.velocity_limit),
                "available": fmt(available),
            }
        return {
            "cardId": card.id,
            "accountId": card.account_id,
            "balance": {"id": balance.id, "available": fmt(balance.available), "currency": CURRENCY},
            "statistics": {
                "consumption": fmt(consumption),
                "reversal": fmt(ZERO),
                "reversalFee": fmt(ZERO),
                "refund": fmt(ZERO),
                "refundFee": fmt(ZERO),
                "netConsumption": fmt(consumption),
                "currency": CURRENCY,
            },
            "velocityControl": velocity,
        }

    def snapshot(self) -> dict[str, Any]:
        """Totals for tests and the CLI (``GET /_sandbox/state``); never PAN/CVV."""

        def total(kinds: Iterable[str]) -> str:
            wanted = set(kinds)
            return fmt_crypto(sum((m.amount for m in self.movements if m.kind in wanted), ZERO))

        return {
            "infinity": {b.id: fmt(b.available) for b in self.balances.values() if b.object_type == 0},
            "loaded_total": total(("card_issue", "transfer_in")),
            "unloaded_total": total(("transfer_out", "card_delete_sweep")),
            "transfers_total": total(("transfer_internal", "transfer_external")),
            "purchases_total": total(("purchase",)),
            "reversals_total": total(("purchase_reversal",)),
            "fees_total": total(("issuance_fee",)),
            "deposits_total": total(("crypto_deposit",)),
            "funded_total": total(("wallet_to_infinity",)),
            "card_count": sum(1 for c in self.cards.values() if not c.deleted),
            "cards": {
                c.id: {
                    "status": "DELETED" if c.deleted else c.status,
                    "available": fmt(self.balances[c.balance_id].available),
                }
                for c in self.cards.values()
            },
            "wallets": {
                w.id: {cur: fmt_crypto(w.available.get(cur, ZERO)) for cur in STABLECOINS}
                for w in self.wallets.values()
            },
            "pending_authorizations": sum(
                1 for t in self.card_transactions.values() if t.type == 1 and t.status == "PENDING"
            ),
            "requests": dict(self.requests),
            "movements": [
                {"kind": m.kind, "clientTransactionId": m.client_transaction_id, "amount": fmt_crypto(m.amount)}
                for m in self.movements
            ],
        }
