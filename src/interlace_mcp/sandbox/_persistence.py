"""The state file: JSON, written atomically (temp file + fsync + rename, mode 0600).

Saved: everything but fault rules, in-progress Idempotency-Key markers, webhook sinks and the webhook
log. Keys added after version 1 (wallets, deposits, spend controls, settlement fields) are optional on
load, so a file written before them still loads (and gets the seeded wallet).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from ._base import StateBase
from ._records import (
    STATE_VERSION,
    Account,
    Balance,
    Bin,
    Card,
    Cardholder,
    CardTransaction,
    CryptoDeposit,
    CryptoWallet,
    Grant,
    Movement,
    SandboxConfig,
    SpendRule,
    Transfer,
)
from ._wallets import seed_wallets

__all__ = ["PersistenceMixin"]


class PersistenceMixin(StateBase):
    """``to_dict`` / ``from_dict`` / ``save`` / ``load``."""

    def to_dict(self) -> dict[str, Any]:
        """Everything except fault rules, in-progress idempotency markers and webhooks, JSON-ready."""
        return {
            "version": STATE_VERSION,
            "seq": self._seq,
            "config": self.config.dump(),
            "accounts": [a.dump() for a in self.accounts.values()],
            "balances": [b.dump() for b in self.balances.values()],
            "bins": [b.dump() for b in self.bins.values()],
            "cardholders": [h.dump() for h in self.cardholders.values()],
            "cards": [c.dump() for c in self.cards.values()],
            "card_transactions": [t.dump() for t in self.card_transactions.values()],
            "transfers": [t.dump() for t in self.transfers.values()],
            "wallets": [w.dump() for w in self.wallets.values()],
            "deposits": [d.dump() for d in self.deposits],
            "spend_rules": [r.dump() for r in self.spend_rules.values()],
            "idempotency": [[*scope, data] for scope, data in self.idempotency.items() if data is not None],
            "client_txn": [[*key, object_id] for key, object_id in self.client_txn.items()],
            "access_tokens": {k: g.dump() for k, g in self.access_tokens.items()},
            "refresh_tokens": {k: g.dump() for k, g in self.refresh_tokens.items()},
            "auth_codes": {k: g.dump() for k, g in self.auth_codes.items()},
            "private_info_tokens": {k: g.dump() for k, g in self.private_info_tokens.items()},
            "requests": dict(self.requests),
            "movements": [m.dump() for m in self.movements],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, clock: Callable[[], float] | None = None) -> Self:
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise ValueError(f"not a sandbox state (version {STATE_VERSION}) document")
        state = cls(clock=clock)
        try:
            state._seq = int(raw["seq"])
            state.config = SandboxConfig.load(raw["config"])
            state.accounts = {a.id: a for a in map(Account.load, raw["accounts"])}
            state.balances = {b.id: b for b in map(Balance.load, raw["balances"])}
            state.bins = {b.id: b for b in map(Bin.load, raw["bins"])}
            state.cardholders = {h.id: h for h in map(Cardholder.load, raw["cardholders"])}
            state.cards = {c.id: c for c in map(Card.load, raw["cards"])}
            state.card_transactions = {t.id: t for t in map(CardTransaction.load, raw["card_transactions"])}
            state.transfers = {t.id: t for t in map(Transfer.load, raw["transfers"])}
            if "wallets" in raw:
                state.wallets = {w.id: w for w in map(CryptoWallet.load, raw["wallets"])}
            else:
                state.wallets = seed_wallets(state.now_ms())
            state.deposits = [CryptoDeposit.load(d) for d in raw.get("deposits", [])]
            state.spend_rules = {r.id: r for r in map(SpendRule.load, raw.get("spend_rules", []))}
            state.idempotency = {(a, k, p): d for a, k, p, d in raw["idempotency"]}
            state.client_txn = {(a, e, c): i for a, e, c, i in raw["client_txn"]}
            state.access_tokens = {k: Grant.load(g) for k, g in raw["access_tokens"].items()}
            state.refresh_tokens = {k: Grant.load(g) for k, g in raw["refresh_tokens"].items()}
            state.auth_codes = {k: Grant.load(g) for k, g in raw["auth_codes"].items()}
            state.private_info_tokens = {k: Grant.load(g) for k, g in raw["private_info_tokens"].items()}
            state.requests = {str(k): int(v) for k, v in raw["requests"].items()}
            state.movements = [Movement.load(m) for m in raw["movements"]]
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise ValueError(f"malformed sandbox state: {type(exc).__name__}") from None
        return state

    def save(self, path: Path) -> None:
        """Atomically write the state as JSON (temp file in the same dir + os.replace; mode 0600)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, *, clock: Callable[[], float] | None = None) -> Self:
        with Path(path).open(encoding="utf-8") as fh:
            raw = json.load(fh)
        return cls.from_dict(raw, clock=clock)
