"""CryptoConnect wallets: stablecoin balances, deposit addresses and simulated on-chain deposits."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from decimal import Decimal
from typing import Final

from . import _seeds as seeds
from ._base import StateBase
from ._records import STABLECOINS, ZERO, CryptoDeposit, CryptoWallet, Movement, WalletAddress, bad, not_found

__all__ = ["EVM_CHAINS", "WalletsMixin", "seed_wallets"]

#: Chains the emulator makes deposit addresses on (EVM chains: one address format; emulator choice).
EVM_CHAINS: Final = ("ETH", "ARB", "BASE", "BSC", "POLYGON", "OP", "AVAX")


def seed_wallets(now_ms: int) -> dict[str, CryptoWallet]:
    """The seeded master wallet of the sandbox account: 5,000.00 USDC, 0 USDT, one ETH address."""
    wallet = CryptoWallet(
        id=seeds.CRYPTO_WALLET_ID,
        account_id=seeds.ACCOUNT_ID,
        reference_id=seeds.CRYPTO_WALLET_REFERENCE_ID,
        nickname="Sandbox Wallet",
        master=True,
        create_time=now_ms,
        available={"USDC": seeds.INITIAL_USDC_BALANCE, "USDT": ZERO},
        frozen={"USDC": ZERO, "USDT": ZERO},
        addresses=[WalletAddress(seeds.DEPOSIT_ADDRESS_ID, "USDC", seeds.DEPOSIT_CHAIN, seeds.DEPOSIT_ADDRESS, now_ms)],
    )
    return {wallet.id: wallet}


def _derived_address(wallet_id: str, chain: str) -> str:
    """A stable, well-formed EVM address for (wallet, chain): the same wallet gets the same one back."""
    return "0x" + hashlib.sha256(f"{wallet_id}:{chain}".encode()).hexdigest()[:40]


class WalletsMixin(StateBase):
    """``/cryptoconnect/wallets`` and the ``/_sandbox/deposit`` control."""

    def list_wallets(self, account_id: str, *, master: bool | None = None) -> list[CryptoWallet]:
        wallets = [w for w in self.wallets.values() if w.account_id == account_id]
        if master is not None:
            wallets = [w for w in wallets if w.master == master]
        return sorted(wallets, key=lambda w: (not w.master, w.create_time, w.id))

    def default_wallet(self, account_id: str) -> CryptoWallet:
        wallets = self.list_wallets(account_id)
        if not wallets:
            raise not_found("wallet")
        return wallets[0]

    def create_wallet(self, account_id: str, *, reference_id: str, nickname: str) -> CryptoWallet:
        """A new (non-master) wallet with zero balances and no address yet, as Interlace's MoR guide shows it.
        A referenceId is unique per account (emulator choice: a repeat is a 400, as for cards)."""
        if any(w.reference_id == reference_id for w in self.wallets.values() if w.account_id == account_id):
            raise bad("referenceId is already used by another wallet of this account")
        wallet = CryptoWallet(
            id=str(uuid.uuid4()),
            account_id=account_id,
            reference_id=reference_id,
            nickname=nickname,
            master=False,
            create_time=self.now_ms(),
            available=dict.fromkeys(STABLECOINS, ZERO),
            frozen=dict.fromkeys(STABLECOINS, ZERO),
        )
        self.wallets[wallet.id] = wallet
        return wallet

    def create_wallet_address(self, account_id: str, wallet_id: str, *, currency: str, chain: str) -> WalletAddress:
        """The wallet's address for (currency, chain), made on first request (emulator choice: one per pair)."""
        if currency not in STABLECOINS:
            raise bad(f"currency must be one of {', '.join(STABLECOINS)}")
        if chain not in EVM_CHAINS:
            raise bad(f"chain must be one of {', '.join(EVM_CHAINS)}")
        wallet = self.get_wallet(account_id, wallet_id)
        for address in wallet.addresses:
            if address.currency == currency and address.chain == chain:
                return address
        same_chain = next((a.address for a in wallet.addresses if a.chain == chain), None)
        address = WalletAddress(
            id=str(uuid.uuid4()),
            currency=currency,
            chain=chain,
            address=same_chain or _derived_address(wallet.id, chain),
            create_time=self.now_ms(),
        )
        wallet.addresses.append(address)
        return address

    def deposit(
        self, account_id: str, *, currency: str, amount: Decimal, chain: str = "ETH", wallet_id: str | None = None
    ) -> CryptoDeposit:
        """Sandbox only: an on-chain deposit of ``amount`` ``currency`` arrives at the wallet's address."""
        if amount <= 0:
            raise bad("amount must be greater than zero")
        wallet = self.get_wallet(account_id, wallet_id) if wallet_id else self.default_wallet(account_id)
        address = self.create_wallet_address(account_id, wallet.id, currency=currency, chain=chain)
        wallet.available[currency] = wallet.available.get(currency, ZERO) + amount
        deposit = CryptoDeposit(
            id=str(uuid.uuid4()),
            wallet_id=wallet.id,
            currency=currency,
            chain=chain,
            address=address.address,
            amount=amount,
            tx_hash="0x" + secrets.token_hex(32),
            create_time=self.now_ms(),
        )
        self.deposits.append(deposit)
        self.movements.append(Movement("crypto_deposit", "", amount))
        return deposit
