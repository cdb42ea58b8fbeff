"""How the emulator proves it is the interlace-mcp emulator (``POST /_sandbox/identity``).

The server sends a fresh random nonce and its client id; the emulator answers ``{"emulator": IDENTITY_MARKER,
"proof": HMAC-SHA256(client secret, IDENTITY_CONTEXT | client id | nonce)}`` for a client id it knows. The server
checks the proof with the client secret it is configured with. Nothing secret crosses the wire: the server sends
only the nonce and the (public) client id, and a proof is good for one nonce. A server that merely answers 200,
echoes its input or stands in front of Interlace (which serves no ``/_sandbox/``) cannot make the proof; nor can
anything that does not know the secret these credentials name. The context string keeps the proof apart from
every other use of that secret (webhook signatures).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["IDENTITY_MARKER", "IDENTITY_NONCE_CHARS", "identity_proof"]

#: What ``data.emulator`` says in the emulator's answer.
IDENTITY_MARKER: Final = "interlace-mcp-emulator"
#: Domain separation: the MAC'd message starts with it.
IDENTITY_CONTEXT: Final = b"interlace-mcp emulator identity v1"
#: The nonce: 64 lower-case hex characters (32 random bytes).
IDENTITY_NONCE_CHARS: Final = 64


def identity_proof(client_secret: str, client_id: str, nonce: str) -> str:
    """HMAC-SHA256 (hex) of the identity message for ``client_id`` and ``nonce``, keyed by ``client_secret``."""
    message = b"\n".join((IDENTITY_CONTEXT, client_id.encode("utf-8"), nonce.encode("ascii")))
    return hmac.new(client_secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
