"""The last refusals of each agent's money calls, by request_id -- in this process's memory only.

A refusal stores nothing (bad input and broken rules change nothing, and the request_id stays free), so the
ledger cannot answer "what happened to request X?" for one. This note lets ``get_request_status`` answer
``refused`` with the refusal's own text instead of ``not_found``. It is not binding and not shared: bounded
(the newest :data:`PER_AGENT` per agent and scope, kept :data:`KEEP_SECONDS`), lost on restart, and
invisible to other processes or workers (there a refused request reads ``not_found``). The ledger's answer,
when there is one, always wins.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["KEEP_SECONDS", "PER_AGENT", "RefusalNote", "RefusalNotes"]

#: How many refused request_ids are remembered per agent (and ledger scope); the oldest are dropped first.
PER_AGENT = 100
#: How long a note is kept (seconds on the ledger's clock).
KEEP_SECONDS = 24 * 3600.0
#: How many agents' notes one process keeps (the least recently refused agent is dropped first).
MAX_AGENTS = 1000


@dataclass(frozen=True)
class RefusalNote:
    tool: str
    #: The refusal's text as the agent received it (``[code] ...``): the server's own words only.
    text: str
    amount: str | None
    currency: str
    at: float


class RefusalNotes:
    def __init__(self) -> None:
        self._notes: OrderedDict[tuple[str, str], OrderedDict[str, RefusalNote]] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, scope: str, agent: str, request_id: str, note: RefusalNote) -> None:
        with self._lock:
            key = (scope, agent)
            notes = self._notes.pop(key, None) or OrderedDict()
            notes.pop(request_id, None)
            notes[request_id] = note
            while len(notes) > PER_AGENT:
                notes.popitem(last=False)
            self._notes[key] = notes
            while len(self._notes) > MAX_AGENTS:
                self._notes.popitem(last=False)

    def find(self, scope: str, agent: str, request_id: str, *, now: float) -> RefusalNote | None:
        with self._lock:
            notes = self._notes.get((scope, agent))
            note = notes.get(request_id) if notes is not None else None
        return note if note is not None and now - note.at <= KEEP_SECONDS else None
