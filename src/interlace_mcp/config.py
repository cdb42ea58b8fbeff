"""Settings: one pydantic-settings class, env prefix ``INTERLACE_``; flags > env > ``.env`` > defaults.

Which upstream (DESIGN section 5): the embedded emulator runs in-process when none of
``INTERLACE_CLIENT_ID``, ``INTERLACE_CLIENT_SECRET``, ``INTERLACE_BASE_URL``, ``INTERLACE_ENV`` is set
(empty strings count as unset). Partial credentials, or an ENV / BASE_URL without credentials, stop
startup with a message naming what is missing. Credentials alone mean the Interlace sandbox host.

Bad settings (DESIGN 13): ``load_settings`` and ``check_startup`` turn every problem into a
``ConfigError`` whose message is one line naming the variable, the bad value (secrets masked) and the
fix; the CLI prints it and exits 2. ``FIXES`` holds the fix for every setting (a test keeps it complete).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import platformdirs
from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "FIXES",
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "SECRET_SETTINGS",
    "TOOLSETS",
    "ConfigError",
    "Settings",
    "Upstream",
    "check_startup",
    "env_name",
    "load_settings",
    "mask_url",
    "resolve_upstream",
    "shown_value",
]

SANDBOX_BASE_URL = "https://api-sandbox.interlace.money"
PRODUCTION_BASE_URL = "https://api.interlace.money"
#: Base URL the in-process emulator is mounted at (never resolved on a network).
EMBEDDED_BASE_URL = "http://embedded-sandbox.invalid"

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

#: The toolsets ``--toolsets`` / ``INTERLACE_TOOLSETS`` may name (the registry's; a test keeps them equal).
TOOLSETS = ("cards", "transfers", "account", "spend", "funding")
#: Settings whose values are never shown (messages, ``check``).
SECRET_SETTINGS = frozenset({"client_secret", "webhook_secret", "audit_hmac_key", "request_state_key"})

#: How to fix each setting, in words (the second half of every settings error).
FIXES: dict[str, str] = {
    "env": "set sandbox or production, or unset it (and the credentials) for the embedded sandbox",
    "base_url": "set an https URL such as https://api-sandbox.interlace.money (http only for a loopback emulator)",
    "client_id": "paste the client id from the Interlace Merchant Portal (Development Settings) without spaces",
    "client_secret": "paste the client secret from the Interlace Merchant Portal (Development Settings) exactly",
    "account_id": "use the accountId interlace-mcp doctor prints, or unset it to discover it",
    "bin_id": "use a prepaid BIN id interlace-mcp doctor prints, or unset it to use the first prepaid BIN",
    "cardholder_id": "use a cardholder id interlace-mcp doctor prints, or unset it on a sandbox",
    "crypto_wallet_id": "use a CryptoConnect wallet id interlace-mcp doctor prints, or unset it to use the account's"
    " master wallet",
    "policy_file": "point it at a readable policy TOML file, or unset it for the built-in policy",
    "agent_id": "use 1-63 lowercase letters, digits, _ or -, starting with a letter or digit (e.g. claude-desktop)",
    "database_url": "use sqlite:///path/to/file.sqlite3 or postgresql://user:pass@host:5432/db, or unset it for "
    "SQLite in the state dir",
    "state_dir": "point it at a directory this user can create and write, or unset it for the platform default",
    "webhook_secret": "set the webhook signing key configured at Interlace (at least 16 characters, no spaces), or "
    "unset it to use the client secret",
    "audit_hmac_key": "set a random key of at least 16 characters without spaces (e.g. openssl rand -hex 32), or "
    "unset it",
    "read_only": "set true or false",
    "toolsets": f"set a comma list of {', '.join(TOOLSETS)}, or unset it for all",
    "allowed_hosts": "set a comma list of host or host:port entries such as mcp.example.com:443 (no scheme, no path)",
    "allowed_origins": "set a comma list of origins such as https://app.example.com (scheme and host, no path)",
    "public_url": "set the server's public base URL such as https://mcp.example.com",
    "jwt_issuer": "set the identity provider's issuer URL such as https://idp.example.com/",
    "jwt_audience": "set the audience your identity provider puts in tokens for this server (no spaces)",
    "jwt_jwks_url": "set the identity provider's https JWKS URL such as https://idp.example.com/.well-known/jwks.json",
    "jwt_public_key_file": "point it at a readable PEM public key file, or unset it and use INTERLACE_JWT_JWKS_URL",
    "rate_limit_per_minute": "set a whole number greater than 0 such as 120",
    "approval_ttl_seconds": "set a whole number of seconds greater than 0 such as 900",
    "approval_notify_url": "set an http(s) URL such as https://hooks.example.com/approvals, or unset it",
    "approval_wait_seconds": "set a whole number of seconds from 0 (never wait) to 3600 such as 120",
    "request_state_key": "set a random key of at least 16 characters without spaces (e.g. openssl rand -hex 32), "
    "the same on every instance, or unset it",
    "log_level": "set DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "log_format": "set text or json",
    "reconcile_interval_seconds": "set a number of seconds, 0 or more (0: at startup only), such as 60",
    "recovery_grace_seconds": "set a number of seconds, 0 or more, such as 120",
    "http_timeout_seconds": "set a number of seconds greater than 0 such as 15",
    "max_retries": "set a whole number from 0 to 10 such as 3",
    "metrics_port": "set a free TCP port from 1 to 65535 such as 9464, or unset it to serve no metrics",
}


class ConfigError(ValueError):
    """Settings that cannot work; the message is one line naming the variable, the value and the fix."""


def env_name(field: str) -> str:
    return f"INTERLACE_{field.upper()}"


def mask_url(url: str) -> str:
    """A URL with any password (user:pass@ or ?password=) masked."""
    try:
        parts = urlsplit(url)
        if parts.password is None and "password" not in parts.query.lower():
            return url
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def shown_value(field: str, value: Any) -> str:
    """How a setting's value appears in a message: secrets masked, database passwords masked, long values cut."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if field in SECRET_SETTINGS:
        return f"<hidden, {len(str(value))} characters>" if value not in (None, "") else "<empty>"
    text = str(value)
    if field == "database_url":
        text = mask_url(text)
    if len(text) > 120:
        text = text[:117] + "..."
    return repr(text)


def _problem(field: str, value: Any, reason: str, flag: str | None = None) -> ConfigError:
    where = f"{env_name(field)} ({flag})" if flag else env_name(field)
    reason = reason.strip().rstrip(".")
    return ConfigError(f"{where}={shown_value(field, value)}: {reason}. Fix: {FIXES.get(field, 'correct it')}")


def _http_url(value: str, *, https_only: bool = False) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("not an http(s) URL")
    if https_only and parts.scheme != "https" and not _is_loopback(parts.hostname):
        raise ValueError("must use https (http only on loopback)")
    return value


def _is_loopback(host: str) -> bool:
    host = host.lower()
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


_HOST_ENTRY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}|\*))?")
_ORIGIN_ENTRY = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}|\*))?")


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
    #: The CryptoConnect wallet get_balance shows and fund_account draws on (unset: the master wallet).
    crypto_wallet_id: str | None = None
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
    #: How long a call needing approval waits for the decision after asking a URL-elicitation client to
    #: open the approval page (INTERLACE_PUBLIC_URL set); 0: never wait (answer pending_approval at once).
    approval_wait_seconds: int = 120
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

    #: Serve Prometheus metrics on 127.0.0.1:<port> (unset: no metrics endpoint).
    metrics_port: int | None = None

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
            raise ValueError("must be a whole number greater than 0")
        return value

    @field_validator("approval_wait_seconds")
    @classmethod
    def _wait(cls, value: int) -> int:
        if not 0 <= value <= 3600:
            raise ValueError("must be a whole number of seconds from 0 to 3600")
        return value

    @field_validator("http_timeout_seconds")
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError("must be a number of seconds greater than 0")
        return value

    @field_validator("reconcile_interval_seconds", "recovery_grace_seconds")
    @classmethod
    def _seconds(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a number of seconds, 0 or more")
        return value

    @field_validator("max_retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        if not 0 <= value <= 10:
            raise ValueError("must be a whole number from 0 to 10")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("must be a TCP port from 1 to 65535")
        return value

    @field_validator("base_url", "public_url", "approval_notify_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("jwt_issuer", "jwt_jwks_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, https_only=True)

    @field_validator("client_id", "account_id", "bin_id", "cardholder_id", "jwt_audience")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or any(c.isspace() for c in value)):
            raise ValueError("contains spaces or control characters")
        return value

    @field_validator("crypto_wallet_id")
    @classmethod
    def _wallet_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError("is not a wallet id (1-64 letters, digits, - or _)")
        return value

    @field_validator("client_secret", "webhook_secret", "audit_hmac_key", "request_state_key")
    @classmethod
    def _secret(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        if not raw.isprintable() or raw != raw.strip():
            raise ValueError("has leading or trailing spaces or control characters (a copy-paste slip?)")
        if info.field_name != "client_secret" and len(raw) < 16:
            raise ValueError("is shorter than 16 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme == "sqlite":
            if not value.startswith("sqlite:///") or value == "sqlite:///":
                raise ValueError("a SQLite URL needs a file path: sqlite:///path/to/file.sqlite3")
        elif scheme not in ("postgresql", "postgres"):
            raise ValueError(f"unsupported database {scheme or value.split(':', 1)[0]!r} (SQLite or PostgreSQL only)")
        return value

    @field_validator("toolsets")
    @classmethod
    def _toolsets(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in TOOLSETS]
        if unknown:
            raise ValueError(f"unknown toolset(s) {', '.join(unknown)}")
        if not names:
            raise ValueError("names no toolset")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: str | None) -> str | None:
        for entry in (item.strip() for item in (value or "").split(",")):
            if entry and not _HOST_ENTRY.fullmatch(entry):
                raise ValueError(f"{entry!r} is not a host or host:port")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str | None) -> str | None:
        for entry in (item.strip() for item in (value or "").split(",")):
            if entry and not _ORIGIN_ENTRY.fullmatch(entry):
                raise ValueError(f"{entry!r} is not an origin (scheme://host[:port])")
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


#: Reasons for pydantic's own type errors (our validators give their own).
_TYPE_REASONS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_type": "is not a whole number",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "literal_error": "is not one of the allowed values",
    "string_type": "is not text",
}
#: Command-line flags that set a setting (named in the message when the flag gave the value).
_FLAGS = {"read_only": "--read-only", "toolsets": "--toolsets"}


def load_settings(flags: Mapping[str, Any] | None = None, **kwargs: Any) -> Settings:
    """Settings from flags > env > .env > defaults; a bad value raises a one-line ConfigError."""
    flags = dict(flags or {})
    try:
        return Settings(**kwargs, **flags)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "value_error":
            # A validator may name the variable and value itself: say them once.
            reason = str(first["msg"]).removeprefix("Value error, ").removeprefix(f"{env_name(field)}=")
            reason = reason.removeprefix(f"{first.get('input')!r}: ")
        elif first["type"] == "literal_error":
            reason = f"is not one of {first.get('ctx', {}).get('expected', 'the allowed values')}"
        else:
            reason = _TYPE_REASONS.get(first["type"], "is not valid")
        more = f" (and {len(errors) - 1} more bad setting{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        flag = _FLAGS.get(field) if field in flags else None
        raise _problem(field, first.get("input"), reason + more, flag) from None


def check_startup(settings: Settings, *, database: bool = True) -> None:
    """Check what only the machine can tell (state dir, files, the database) before anything starts.

    Raises ConfigError (one line: variable, value, fix). ``database=False`` skips opening the database
    (commands that never use it, such as the emulator alone).
    """
    resolve_upstream(settings)
    state = settings.resolved_state_dir()
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise _problem("state_dir", state, "is a regular file, not a directory") from None
    except NotADirectoryError:
        raise _problem("state_dir", state, "a part of the path is a regular file, not a directory") from None
    except OSError as exc:
        raise _problem("state_dir", state, f"cannot be created ({exc.strerror or exc})") from None
    if not os.access(state, os.W_OK | os.X_OK):
        raise _problem("state_dir", state, "is not writable by this user")
    if settings.policy_file is not None:
        _readable("policy_file", settings.policy_file.expanduser())
    if settings.jwt_public_key_file is not None:
        text = _readable("jwt_public_key_file", settings.jwt_public_key_file.expanduser())
        if "-----BEGIN" not in text:
            raise _problem("jwt_public_key_file", settings.jwt_public_key_file, "is not a PEM file (no -----BEGIN)")
    if database:
        _check_database(settings)


def _readable(field: str, path: Path) -> str:
    if path.is_dir():
        raise _problem(field, path, "is a directory, not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _problem(field, path, "is not UTF-8 text") from None
    except OSError as exc:
        raise _problem(field, path, f"cannot be read ({exc.strerror or exc})") from None


def _check_database(settings: Settings) -> None:
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :]).expanduser()
        if path.is_dir():
            raise _problem("database_url", url, "names a directory, not a database file")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _problem("database_url", url, f"its directory cannot be created ({exc.strerror or exc})") from None
        return
    import psycopg

    # A short timeout unless the URL sets one: an unreachable server stops startup in seconds, not minutes.
    extra: dict[str, Any] = {} if "connect_timeout" in url else {"connect_timeout": 5}
    try:
        psycopg.connect(url, **extra).close()
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split()).removeprefix("connection failed: ")
        password = urlsplit(url).password
        if password:
            detail = detail.replace(password, "***")
        if len(detail) > 200:
            detail = detail[:197] + "..."
        raise _problem("database_url", url, f"cannot connect to PostgreSQL ({detail})") from None


@dataclass(frozen=True)
class Upstream:
    """Which Interlace the server talks to, resolved once at startup.

    A custom INTERLACE_BASE_URL starts ``unproven``: whether it is our emulator is decided when the runtime opens,
    by :func:`interlace_mcp.app.prove_emulator` (the emulator answers a challenge only it can answer); until then,
    and whenever that fails, it gets production defaults. Being on loopback proves nothing (a local proxy in front
    of Interlace is on loopback too).
    """

    embedded: bool
    base_url: str
    client_id: str
    client_secret: str
    #: True when no real money can move: our emulator (proven), or Interlace's own sandbox host.
    sandbox: bool
    #: True for our emulator: embedded (by construction), or an upstream that proved it is (identity challenge).
    #: Only then do the built-in sandbox defaults apply (reveal on, the seeded payee ``sandbox-payee``).
    emulator: bool = False
    #: A custom base URL not yet challenged: may still prove it is our emulator when the runtime opens.
    unproven: bool = False
    #: Why ``sandbox`` / ``emulator`` are what they are (for ``check`` and the startup log).
    why: str = ""

    @property
    def scope(self) -> str:
        """Ledger scope prefix: spend on one upstream never mixes with another's."""
        return self.base_url.rstrip("/")

    @property
    def loopback(self) -> bool:
        """The base URL's host is a loopback address."""
        return not self.embedded and _is_loopback(urlsplit(self.base_url).hostname or "")

    def __repr__(self) -> str:  # never show the secret
        return (
            f"Upstream(embedded={self.embedded}, base_url={self.base_url!r}, sandbox={self.sandbox}, "
            f"emulator={self.emulator}, unproven={self.unproven})"
        )


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
            why="the embedded emulator (in this process, by construction)",
        )
    missing = [name for name in ("INTERLACE_CLIENT_ID", "INTERLACE_CLIENT_SECRET") if not given[name]]
    if missing:
        present = [
            f"{name}={'<hidden>' if name == 'INTERLACE_CLIENT_SECRET' else repr(value)}"
            for name, value in given.items()
            if value
        ]
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing while "
            f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} set: a real Interlace upstream needs both "
            f"OAuth credentials. Fix: set {' and '.join(missing)} (Interlace Merchant Portal -> Development "
            "Settings), or unset INTERLACE_CLIENT_ID, INTERLACE_CLIENT_SECRET, INTERLACE_BASE_URL and "
            "INTERLACE_ENV for the embedded sandbox"
        )
    assert settings.client_id is not None and secret is not None
    if settings.base_url:
        base_url = settings.base_url.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _problem("base_url", settings.base_url, "is not an http(s) URL")
        loopback = _is_loopback(parts.hostname or "")
        if parts.scheme == "http" and not (loopback or settings.env == "sandbox"):
            raise _problem("base_url", settings.base_url, "must use https unless it is a loopback emulator")
        # Neither loopback nor INTERLACE_ENV=sandbox makes a URL our emulator: only the identity challenge does
        # (app.prove_emulator, when the runtime opens). Interlace's own sandbox host is known by name; a custom
        # non-loopback URL declared INTERLACE_ENV=sandbox keeps the "no real money" mark (not the emulator's
        # defaults); on loopback that declaration counts for nothing (it may be a proxy in front of production).
        sandbox = base_url == SANDBOX_BASE_URL or (settings.env == "sandbox" and not loopback)
        unproven = base_url not in (SANDBOX_BASE_URL, PRODUCTION_BASE_URL)
        if not unproven:
            why = "Interlace's sandbox host" if sandbox else "Interlace production"
        else:
            why = ("INTERLACE_ENV=sandbox, " if sandbox else "") + "a custom base URL not yet challenged"
        emulator = False
    elif settings.env == "production":
        base_url, sandbox, emulator, unproven, why = PRODUCTION_BASE_URL, False, False, False, "Interlace production"
    else:
        base_url, sandbox, emulator, unproven = SANDBOX_BASE_URL, True, False, False
        why = "Interlace's sandbox host"
    return Upstream(
        embedded=False,
        base_url=base_url,
        client_id=settings.client_id,
        client_secret=secret,
        sandbox=sandbox,
        emulator=emulator,
        unproven=unproven,
        why=why,
    )
