"""Fault injection: rules matched per request path (and method), consumed a number of times."""

from __future__ import annotations

import uuid

from ._base import StateBase
from ._records import FAULT_KINDS, HTTP_METHODS, FaultRule, check_int

__all__ = ["FaultsMixin"]


class FaultsMixin(StateBase):
    """The fault rules of the control API (never saved with the state)."""

    def add_fault(
        self,
        path: str,
        kind: str,
        *,
        method: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        delay_ms: int | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Register a fault rule (see the control API); raises ValueError on a malformed rule."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("path must be an absolute API path like /open-api/v3/cards/transfer-in")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if method is not None:
            if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
                raise ValueError(f"method must be one of {', '.join(HTTP_METHODS)}")
            method = method.upper()
        if kind == "fail_after_commit" and status == 0:
            pass
        elif status is not None:
            check_int("status", status, 400, 599)
        check_int("retry_after", retry_after, 0, 86400)
        check_int("delay_ms", delay_ms, 0, 600_000)
        check_int("times", times, 1)
        rule = FaultRule(uuid.uuid4().hex, path, kind, method, status, retry_after, delay_ms, times)
        self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, method: str, path: str) -> FaultRule | None:
        """The first rule matching this request, counting one use of it."""
        for rule in self.faults:
            if rule.matches(method, path):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.faults.remove(rule)
                return rule
        return None
