"""Card-field decryption: AES-ECB, PKCS7, key = client secret bytes, hex."""

from __future__ import annotations

import pytest

from interlace_mcp.client import CardDecryptionError, decrypt_card_field, encrypt_card_field

SECRET_32 = "sandbox-secret-0123456789abcdef!"


@pytest.mark.parametrize("secret", ["k" * 16, "k" * 24, SECRET_32])
def test_round_trip_for_every_aes_key_size(secret: str) -> None:
    """16, 24 and 32-byte secrets are AES-128/192/256 keys."""
    cipher = encrypt_card_field("4111111111111111", secret)
    assert cipher != "4111111111111111"
    assert decrypt_card_field(cipher, secret) == "4111111111111111"


def test_known_vectors_computed_with_openssl_decrypt() -> None:
    """Vectors made independently with ``openssl enc -aes-{128,256}-ecb -nosalt`` decrypt."""
    # printf '123' | openssl enc -aes-128-ecb -K 6b6b...6b (= "k" * 16) -nosalt | xxd -p
    assert decrypt_card_field("a49447509cf2f496603b2beb7376d8cb", "k" * 16) == "123"
    # printf '4111111111111111' | openssl enc -aes-256-ecb -K <hex of SECRET_32> -nosalt | xxd -p
    vector = "6f6a0f1ae18dc007dd126f115b7bc373235105b2a275f479ef4f90fe8bd9d36b"
    assert decrypt_card_field(vector, SECRET_32) == "4111111111111111"
    assert decrypt_card_field(vector.upper(), SECRET_32) == "4111111111111111"


def test_a_secret_of_the_wrong_length_is_a_clear_error_without_the_secret() -> None:
    """A key that is not 16/24/32 bytes is refused, and the message does not quote it."""
    with pytest.raises(CardDecryptionError, match="16, 24 or 32 bytes") as info:
        decrypt_card_field("00" * 16, "short-secret")
    assert "short-secret" not in str(info.value)


@pytest.mark.parametrize("ciphertext", ["zz", "00" * 15, ""])
def test_malformed_ciphertext_is_refused(ciphertext: str) -> None:
    """Non-hex or partial blocks raise CardDecryptionError (a ValueError)."""
    with pytest.raises(ValueError):
        decrypt_card_field(ciphertext, SECRET_32)


def test_the_wrong_key_does_not_return_garbage() -> None:
    """Decrypting with another secret fails on the padding instead of returning noise."""
    cipher = encrypt_card_field("4111111111111111", SECRET_32)
    with pytest.raises(CardDecryptionError):
        decrypt_card_field(cipher, "another-secret-0123456789abcdef!")
