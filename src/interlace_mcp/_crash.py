"""Crash points for the crash-recovery tests: with ``INTERLACE_CRASH_AT=<name>`` set, the process dies
at that point exactly like ``kill -9`` (``os._exit``: no cleanup, no flush). Unset, it does nothing."""

from __future__ import annotations

import os
import sys

__all__ = ["CRASH_POINTS", "crashpoint"]

#: Where a money call can be killed: after the reservation (and intent) is stored, right before the
#: first upstream send, after Interlace answered but before the commit, and after the commit.
CRASH_POINTS = ("after_reserve", "after_intent", "after_upstream", "after_commit")


def crashpoint(name: str) -> None:
    if os.environ.get("INTERLACE_CRASH_AT") == name:
        sys.stderr.write(f"interlace-mcp: crash point {name} reached, exiting like kill -9\n")
        sys.stderr.flush()
        os._exit(137)
