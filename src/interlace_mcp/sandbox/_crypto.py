"""Card-detail encryption exactly as Interlace does it: AES-ECB, PKCS7, key = clientSecret bytes, hex."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["decrypt_card_field", "encrypt_card_field"]

_KEY_SIZES = (16, 24, 32)


def _key(secret: str) -> bytes:
    key = secret.encode("utf-8")
    if len(key) not in _KEY_SIZES:
        raise ValueError(f"client secret must be 16, 24 or 32 UTF-8 bytes for AES, got {len(key)} bytes")
    return key


def encrypt_card_field(plain: str, secret: str) -> str:
    """Encrypt ``plain`` (a PAN or CVV) with AES-ECB/PKCS7 keyed by ``secret``; lower-case hex out."""
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    data = padder.update(plain.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(secret)), modes.ECB()).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex()


def decrypt_card_field(cipher_hex: str, secret: str) -> str:
    """Inverse of :func:`encrypt_card_field`; raises ValueError on any malformed input."""
    key = _key(secret)
    try:
        data = bytes.fromhex(cipher_hex)
    except ValueError:
        raise ValueError("encrypted card field is not hex") from None
    if not data or len(data) % 16:
        raise ValueError("encrypted card field is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError:  # bad padding (wrong key) or invalid UTF-8
        raise ValueError("encrypted card field did not decrypt (wrong key?)") from None
