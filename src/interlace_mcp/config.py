"""Settings: one pydantic-settings class, env prefix ``INTERLACE_``; flags > env > ``.env`` > defaults.

Which upstream (DESIGN section 5): the embedded emulator runs in-process when none of
``INTERLACE_CLIENT_ID``, ``INTERLACE_CLIENT_SECRET``, ``INTERLACE_BASE_URL``, ``INTERLACE_ENV`` is set
(empty strings count as unset). Partial credentials, or an ENV / BASE_URL without credentials, stop
startup with a message naming what is missing. Credentials alone mean the Interlace sandbox host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "ConfigError",
    "Settings",
    "Upstream",
    "resolve_upstream",
]

SANDBOX_BASE_URL = "https://api-sandbox.interlace.money"
PRODUCTION_BASE_URL = "https://api.interlace.money"
#: Base URL the in-process emulator is mounted at (never resolved on a network).
EMBEDDED_BASE_URL = "http://embedded-sandbox.invalid"

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class ConfigError(ValueError):
    """Settings that cannot work; the message names the variable and what to do."""


class Settings(BaseSettings):
    """Every ``INTERLACE_*`` setting (README lists them all; a test checks that it does)."""

    model_config = SettingsConfigDict(
        env_prefix="INTERLACE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # DESIGN 5: "empty strings count as unset" -- an empty variable falls back to the default.
        env_ignore_empty=True,
    )

    env: Literal["sandbox", "production"] | None = None
    base_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    account_id: str | None = None
    bin_id: str | None = None
    cardholder_id: str | None = None
    policy_file: Path | None = None
    agent_id: str = "default"
    database_url: str | None = None
    state_dir: Path | None = None
    webhook_secret: SecretStr | None = None
    #: Optional key kept outside the database: each audit record then also carries HMAC(key, hash), so even
    #: someone who can rewrite the whole database (and, on PostgreSQL, its anchor row) cannot forge records.
    audit_hmac_key: SecretStr | None = None
    read_only: bool = False
    toolsets: str | None = None
    allowed_hosts: str | None = None
    allowed_origins: str | None = None
    public_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    #: PEM public key file for --auth jwt without a JWKS endpoint (an addition to DESIGN's settings).
    jwt_public_key_file: Path | None = None
    rate_limit_per_minute: int = 120
    approval_ttl_seconds: int = 900
    approval_notify_url: str | None = None
    request_state_key: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    #: Unfinished requests are looked up at Interlace at startup and every this many seconds (0: never on
    #: a timer), once they have been untouched for the grace period (another process may be driving them).
    reconcile_interval_seconds: float = 60.0
    recovery_grace_seconds: float = 120.0
    #: HTTP timeout for one Interlace call, and how many times a retryable failure is retried.
    http_timeout_seconds: float = 15.0
    max_retries: int = 3

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("agent_id")
    @classmethod
    def _agent_name(cls, value: str) -> str:
        from interlace_mcp.policy import AGENT_NAME_RULE, is_agent_name

        if not is_agent_name(value):
            raise ValueError(f"INTERLACE_AGENT_ID={value!r}: {AGENT_NAME_RULE}")
        return value

    @field_validator("rate_limit_per_minute", "approval_ttl_seconds")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive whole number")
        return value

    # ---- derived values -------------------------------------------------------------------
    def resolved_state_dir(self) -> Path:
        """Where local state lives (ledger database, emulator state)."""
        if self.state_dir is not None:
            return self.state_dir.expanduser()
        return Path(platformdirs.user_state_dir("interlace-mcp", appauthor=False))

    def resolved_database_url(self) -> str:
        """``sqlite:///path`` (default: under the state dir) or ``postgresql://...``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_state_dir() / 'interlace-mcp.sqlite3'}"

    def audit_key(self) -> bytes | None:
        return self.audit_hmac_key.get_secret_value().encode("utf-8") if self.audit_hmac_key else None

    def toolset_names(self) -> list[str] | None:
        """The requested toolsets, or None for all."""
        if not self.toolsets:
            return None
        return [name.strip() for name in self.toolsets.split(",") if name.strip()]


@dataclass(frozen=True)
class Upstream:
    """Which Interlace the server talks to, resolved once at startup."""

    embedded: bool
    base_url: str
    client_id: str
    client_secret: str
    #: True when no real money can move: the emulator, or Interlace's own sandbox.
    sandbox: bool
    #: True for our emulator (embedded, or `interlace-mcp sandbox` on a loopback port).
    emulator: bool = False

    @property
    def scope(self) -> str:
        """Ledger scope prefix: spend on one upstream never mixes with another's."""
        return self.base_url.rstrip("/")

    def __repr__(self) -> str:  # never show the secret
        return f"Upstream(embedded={self.embedded}, base_url={self.base_url!r}, sandbox={self.sandbox})"


def resolve_upstream(settings: Settings) -> Upstream:
    """Apply DESIGN section 5 "Which upstream"; raise ConfigError naming what is missing."""
    # Imported here to keep config importable without pulling the emulator's seeds at module load.
    from interlace_mcp.sandbox import CLIENT_ID, CLIENT_SECRET

    secret = settings.client_secret.get_secret_value() if settings.client_secret else None
    given = {
        "INTERLACE_CLIENT_ID": settings.client_id,
        "INTERLACE_CLIENT_SECRET": secret,
        "INTERLACE_BASE_URL": settings.base_url,
        "INTERLACE_ENV": settings.env,
    }
    if not any(given.values()):
        return Upstream(
            embedded=True,
            base_url=EMBEDDED_BASE_URL,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            sandbox=True,
            emulator=True,
        )
    missing = [name for name in ("INTERLACE_CLIENT_ID", "INTERLACE_CLIENT_SECRET") if not given[name]]
    if missing:
        present = [name for name, value in given.items() if value]
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing: "
            f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} set, so a real Interlace "
            "upstream is meant and needs both OAuth credentials (Merchant Portal -> Development "
            "Settings). Unset all four variables to use the embedded sandbox instead."
        )
    assert settings.client_id is not None and secret is not None
    if settings.base_url:
        base_url = settings.base_url.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"INTERLACE_BASE_URL must be an http(s) URL, got {settings.base_url!r}")
        host = (parts.hostname or "").lower()
        sandbox = (
            settings.env == "sandbox"
            or base_url == SANDBOX_BASE_URL
            or host in _LOOPBACK_HOSTS
            or host.startswith("127.")
        )
        if parts.scheme == "http" and not sandbox:
            raise ConfigError("INTERLACE_BASE_URL must use https unless it is a loopback emulator")
        emulator = host in _LOOPBACK_HOSTS or host.startswith("127.")
    elif settings.env == "production":
        base_url, sandbox, emulator = PRODUCTION_BASE_URL, False, False
    else:
        base_url, sandbox, emulator = SANDBOX_BASE_URL, True, False
    return Upstream(
        embedded=False,
        base_url=base_url,
        client_id=settings.client_id,
        client_secret=secret,
        sandbox=sandbox,
        emulator=emulator,
    )
