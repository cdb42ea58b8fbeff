"""Decrypt the PAN and CVV that ``GET /cards/{cardId}`` returns.

Interlace encrypts them with AES in ECB mode, PKCS7 padding, key = the client secret's UTF-8
bytes, and hex-encodes the ciphertext. ECB is Interlace's choice, not ours; we only decrypt.
Error messages never include the key, the ciphertext or the plaintext.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CardDecryptionError", "decrypt_card_field", "encrypt_card_field"]

_KEY_LENGTHS = (16, 24, 32)
_BLOCK = 16


class CardDecryptionError(ValueError):
    """A card field could not be decrypted (bad key length, bad hex, or wrong key)."""


def _key(secret: str) -> bytes:
    key = secret.encode("utf-8")
    if len(key) not in _KEY_LENGTHS:
        raise CardDecryptionError(
            f"the client secret must be 16, 24 or 32 bytes (UTF-8) to be an AES key; it is {len(key)} bytes"
        )
    return key


def decrypt_card_field(hex_ciphertext: str, secret: str) -> str:
    """Decrypt one hex-encoded AES-ECB/PKCS7 card field with the client secret as the key."""
    key = _key(secret)
    try:
        ciphertext = bytes.fromhex(hex_ciphertext)
    except (ValueError, TypeError):
        raise CardDecryptionError("the encrypted card field is not valid hex") from None
    if not ciphertext or len(ciphertext) % _BLOCK:
        raise CardDecryptionError("the encrypted card field is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError:
        # Bad padding or non-UTF-8 output: almost always the wrong client secret.
        raise CardDecryptionError("the card field did not decrypt cleanly (is the client secret right?)") from None


def encrypt_card_field(plaintext: str, secret: str) -> str:
    """The inverse of :func:`decrypt_card_field` (for tests and emulators)."""
    key = _key(secret)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex()
