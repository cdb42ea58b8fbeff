"""Append-only, hash-chained audit log in the ledger's database, anchored beside it (threats H1-H5)."""

from interlace_mcp.audit._log import ANCHOR_MISMATCH_EVENT, AuditLog, AuditWriteError, VerifyResult
from interlace_mcp.audit._record import GENESIS_HASH, REDACTED, AuditRecord, canonical_json, chain_hash

__all__ = [
    "ANCHOR_MISMATCH_EVENT",
    "GENESIS_HASH",
    "REDACTED",
    "AuditLog",
    "AuditRecord",
    "AuditWriteError",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
]
