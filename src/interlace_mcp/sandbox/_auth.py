"""OAuth (authorization codes, access and refresh tokens), private-info tokens and Idempotency-Key records."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from . import _seeds as seeds
from ._base import IdempotencyScope, StateBase
from ._records import AUTH_CODE_TTL, PRIVATE_INFO_TOKEN_TTL, REFRESH_TOKEN_TTL, Grant, SandboxError

__all__ = ["AuthMixin"]


class AuthMixin(StateBase):
    """Credentials the emulator issues, and the Idempotency-Key table."""

    # ---- OAuth ----------------------------------------------------------------------------------

    def authorize(self, client_id: str) -> tuple[str, int]:
        """Issue a single-use authorization code (10 min); returns (code, timestamp seconds)."""
        if not hmac.compare_digest(client_id.encode(), seeds.CLIENT_ID.encode()):
            raise SandboxError(401, "401001", "unknown clientId")
        self._purge_expired()
        code = secrets.token_hex(16)
        self.auth_codes[code] = Grant(client_id, self.now() + AUTH_CODE_TTL)
        return code, int(self.now())

    def exchange_code(self, client_id: str, code: str, client_secret: str | None) -> dict[str, Any]:
        """Trade an authorization code (burned on any attempt) for an access + refresh token."""
        grant = self.auth_codes.pop(code, None)
        ok = (
            grant is not None
            and grant.subject == client_id
            and grant.expires_at > self.now()
            and (client_secret is None or hmac.compare_digest(client_secret.encode(), seeds.CLIENT_SECRET.encode()))
        )
        if not ok:
            raise SandboxError(401, "401002", "authorization code invalid, used or expired")
        return self._issue_tokens(client_id)

    def refresh(self, client_id: str, refresh_token: str) -> dict[str, Any]:
        """Rotate: a new access + refresh token; the old refresh token stops working."""
        grant = self.refresh_tokens.get(refresh_token)
        if grant is None or grant.subject != client_id or grant.expires_at <= self.now():
            raise SandboxError(401, "401002", "refresh token invalid or expired")
        del self.refresh_tokens[refresh_token]
        return self._issue_tokens(client_id)

    def _issue_tokens(self, client_id: str) -> dict[str, Any]:
        self._purge_expired()
        ttl = self.config.token_ttl_seconds
        access, refresh = secrets.token_hex(20), secrets.token_hex(32)
        self.access_tokens[access] = Grant(client_id, self.now() + ttl)
        self.refresh_tokens[refresh] = Grant(client_id, self.now() + max(float(ttl), REFRESH_TOKEN_TTL))
        return {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": ttl,
            "timestamp": int(self.now()),
        }

    def access_token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        grant = self.access_tokens.get(token)
        return grant is not None and grant.expires_at > self.now()

    def expire_access_tokens(self) -> int:
        """Invalidate every issued access token (refresh tokens keep working); returns how many."""
        count = len(self.access_tokens)
        self.access_tokens.clear()
        return count

    def _purge_expired(self) -> None:
        now = self.now()
        for table in (self.access_tokens, self.refresh_tokens, self.auth_codes, self.private_info_tokens):
            for key in [k for k, g in table.items() if g.expires_at <= now]:
                del table[key]

    # ---- private-info token ---------------------------------------------------------------------

    def private_info_token(self, account_id: str, card_id: str) -> str:
        card = self.get_card(account_id, card_id)
        self._purge_expired()
        token = secrets.token_urlsafe(32)
        self.private_info_tokens[token] = Grant(card.id, self.now() + PRIVATE_INFO_TOKEN_TTL)
        return token

    # ---- idempotency ----------------------------------------------------------------------------

    def idempotency_begin(self, scope: IdempotencyScope) -> str | None:
        """None = go ahead (now marked in progress); a string = replay this stored ``data`` JSON."""
        if scope in self.idempotency:
            stored = self.idempotency[scope]
            if stored is None:
                raise SandboxError(409, "409001", "transaction in progress")
            return stored
        self.idempotency[scope] = None
        return None

    def idempotency_finish(self, scope: IdempotencyScope, data_json: str) -> None:
        self.idempotency[scope] = data_json

    def idempotency_abort(self, scope: IdempotencyScope) -> None:
        if scope in self.idempotency and self.idempotency[scope] is None:
            del self.idempotency[scope]
