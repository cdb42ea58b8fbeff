"""Child-process body for the cross-process audit race (imported by spawned processes, not a test)."""

from __future__ import annotations

from typing import Any

from interlace_mcp.audit import AuditLog


def append_many(url: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    """Open the audit log at the database ``url``, append ``count`` records as agent ``p<worker>``, report the seqs."""
    barrier.wait()
    seqs: list[int] = []
    with AuditLog.from_url(url) as log:
        for i in range(count):
            record = log.append(agent=f"p{worker}", tool="top_up_card", event="decision", request_id=f"r{i}")
            seqs.append(record.seq)
    results.put((worker, seqs))
