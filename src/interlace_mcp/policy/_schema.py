"""The ledger's tables: the base schema and the numbered migrations after it (:meth:`Database.migrate`)."""

from __future__ import annotations

from interlace_mcp.policy._db import Migration

__all__ = ["MIGRATIONS"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    day_key TEXT NOT NULL,
    week_key TEXT NOT NULL,
    month_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_entries_open ON spend_entries (scope, agent, state);
CREATE TABLE IF NOT EXISTS spend_totals (
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    currency TEXT NOT NULL,
    "window" TEXT NOT NULL,
    window_key TEXT NOT NULL,
    reserved_minor INTEGER NOT NULL DEFAULT 0 CHECK (reserved_minor >= 0),
    committed_minor INTEGER NOT NULL DEFAULT 0 CHECK (committed_minor >= 0),
    PRIMARY KEY (scope, agent, currency, "window", window_key)
);
CREATE TABLE IF NOT EXISTS requests (
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    args_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    entry_id INTEGER,
    approval_id TEXT,
    keys_json TEXT NOT NULL,
    progress_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT,
    card_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, agent, tool, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests (scope, agent, tool, status);
CREATE INDEX IF NOT EXISTS requests_by_id ON requests (scope, agent, request_id);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    summary TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'used')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL,
    decided_by TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS approvals_open ON approvals (status, expires_at);
CREATE TABLE IF NOT EXISTS cards (
    scope TEXT NOT NULL,
    card_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    label TEXT,
    request_id TEXT,
    frozen_by TEXT,
    created_at REAL NOT NULL,
    deleted_at REAL,
    PRIMARY KEY (scope, card_id)
);
CREATE INDEX IF NOT EXISTS cards_by_agent ON cards (scope, agent, deleted_at);
CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS card_activity (
    scope TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    type INTEGER NOT NULL,
    status TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    merchant TEXT,
    remark TEXT,
    event_time REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, transaction_id)
);
CREATE INDEX IF NOT EXISTS card_activity_by_card ON card_activity (scope, card_id, event_time);
CREATE TABLE IF NOT EXISTS agent_tokens (
    sha256 TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS agent_tokens_by_agent ON agent_tokens (agent);
CREATE TABLE IF NOT EXISTS agent_flags (
    agent TEXT PRIMARY KEY,
    frozen INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    updated_by TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operator_tokens (
    sha256 TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS operator_tokens_by_operator ON operator_tokens (operator);
"""

#: Numbered schema changes, applied once each at startup (:meth:`Database.migrate`). Migration 1 is the
#: base schema above. To change the schema, APPEND a migration (never edit one that has shipped): a
#: database already at version 1 will not run an edited migration 1 again.
MIGRATIONS: list[Migration] = [
    [statement for statement in _SCHEMA.split(";") if statement.strip()],
    # 2: what an operation needs to find its movement again (recovery, reconcile), the execution lease
    # (a retry never runs while the first call is still in flight), and the index the retention purge uses.
    [
        "ALTER TABLE requests ADD COLUMN args_json TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE requests ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS requests_by_age ON requests (status, updated_at)",
    ],
    # 3: funding the Infinity account from a CryptoConnect wallet (fund_account) is not spend: its entries
    # are kind 'fund' (their own daily window, policy fund_daily); every earlier entry is spend.
    [
        "ALTER TABLE spend_entries ADD COLUMN kind TEXT NOT NULL DEFAULT 'spend'",
    ],
    # 4: purpose-bound cards (single-use, expiry, why the server closed one, the last four
    # digits to show it after), 3-D Secure codes as notified (the signed resource, whole), one-time reveal
    # links for a human, and the server's own enforcement actions (one per transaction and action).
    [
        "ALTER TABLE cards ADD COLUMN single_use INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE cards ADD COLUMN expires_at REAL",
        "ALTER TABLE cards ADD COLUMN last_four TEXT",
        "ALTER TABLE cards ADD COLUMN closed_reason TEXT",
        "CREATE INDEX IF NOT EXISTS cards_open ON cards (scope, deleted_at, expires_at)",
        """CREATE TABLE IF NOT EXISTS three_ds_codes (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            card_id TEXT NOT NULL,
            resource_json TEXT NOT NULL,
            received_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS three_ds_codes_by_card ON three_ds_codes (scope, card_id, received_at)",
        """CREATE TABLE IF NOT EXISTS reveal_links (
            token_sha256 TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            agent TEXT NOT NULL,
            card_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL,
            used_by TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS card_enforcement (
            scope TEXT NOT NULL,
            transaction_id TEXT NOT NULL,
            action TEXT NOT NULL,
            card_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (scope, transaction_id, action)
        )""",
    ],
    # 5: what a human needs to decide, stored with the approval when it is created (tool, payee or
    # card, the agent's memo or label as untrusted text, why it needs approval, the agent's day, and the
    # payee's account ids the approval binds).
    [
        "ALTER TABLE approvals ADD COLUMN details_json TEXT NOT NULL DEFAULT '{}'",
    ],
]
