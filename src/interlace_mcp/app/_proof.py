"""``prove_emulator``: the one place that decides whether a custom upstream is our emulator.

Only our emulator gets the built-in sandbox defaults (reveal on, the seeded payee ``sandbox-payee``) and the
``sandbox: true`` mark. The embedded emulator is ours by construction, and Interlace's own hosts are known by
name; any other base URL -- loopback included: a local proxy in front of production is on loopback too -- must
answer a challenge when the runtime opens: ``POST /_sandbox/identity`` with a fresh random nonce, answered with
HMAC-SHA256(the configured client secret, context | client id | nonce) and the emulator's marker
(:mod:`interlace_mcp.sandbox` ``identity_proof``). The secret never leaves this process; a plain HTTP server,
an echo, or Interlace behind a proxy (no ``/_sandbox/``) cannot make the proof. Anything short of it leaves
production defaults, with one warning line when the upstream is on loopback.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import replace

from interlace_mcp.app._runtime import Runtime
from interlace_mcp.client import InterlaceError
from interlace_mcp.config import Upstream
from interlace_mcp.policy import SANDBOX_PAYEE, Payee
from interlace_mcp.sandbox import IDENTITY_MARKER, PAYEE_ACCOUNT_ID, PAYEE_BALANCE_ID, identity_proof

__all__ = ["emulator_payee", "prove_emulator"]

logger = logging.getLogger("interlace_mcp.app")


def emulator_payee() -> Payee:
    """The emulator's seeded payee account (policy name ``sandbox-payee``)."""
    return Payee(name=SANDBOX_PAYEE, account_id=PAYEE_ACCOUNT_ID, balance_id=PAYEE_BALANCE_ID, currency="USD")


async def prove_emulator(runtime: Runtime) -> Upstream:
    """Decide, once per runtime, whether its upstream is our emulator; update the runtime (upstream, policy
    defaults) and log the decision and why. Needs the runtime's client open. Returns the decided upstream."""
    upstream = runtime.upstream
    if not upstream.unproven:
        return upstream
    nonce = secrets.token_hex(32)
    reason: str | None = None
    try:
        answer = await runtime.api.sandbox_identity(nonce)
    except InterlaceError as exc:
        # The status only: an error's message may be the upstream's own text.
        status = f"HTTP {exc.status_code}" if exc.status_code is not None else _no_answer(exc)
        reason = f"the identity challenge failed: {status}"
    else:
        proof = answer.get("proof")
        expected = identity_proof(upstream.client_secret, upstream.client_id, nonce)
        if answer.get("emulator") != IDENTITY_MARKER:
            reason = "the identity challenge failed: the answer lacks the emulator's marker"
        elif not isinstance(proof, str) or not hmac.compare_digest(proof.encode(), expected.encode()):
            reason = "the identity challenge failed: the answer is not a valid proof for these credentials"
    if reason is None:
        decided = replace(
            upstream,
            sandbox=True,
            emulator=True,
            unproven=False,
            why="proved it is the interlace-mcp emulator (answered the identity challenge)",
        )
        runtime.policies.use_emulator_defaults(emulator_payee())
        logger.info("upstream %s %s: sandbox defaults, no real money", upstream.base_url, decided.why)
    else:
        mark = "Interlace sandbox by INTERLACE_ENV" if upstream.sandbox else "production (real money)"
        decided = replace(upstream, unproven=False, why=f"not proven to be the interlace-mcp emulator: {reason}")
        if upstream.loopback:
            logger.warning(
                "loopback upstream %s is not proven to be the interlace-mcp emulator (%s): treated as %s, "
                "production defaults (no reveal, no sandbox-payee)",
                upstream.base_url,
                reason,
                mark,
            )
        else:
            logger.info("upstream %s %s: treated as %s", upstream.base_url, decided.why, mark)
    runtime.upstream = decided
    return decided


def _no_answer(exc: InterlaceError) -> str:
    """Why there was no HTTP answer (timeout, refused connection), in a few words of our own."""
    cause = exc.__cause__
    return f"no answer ({type(cause).__name__ if cause is not None else type(exc).__name__})"
