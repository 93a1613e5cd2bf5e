"""Hashing and signatures behind two small interfaces.

`Signer` holds a private key and signs; `SignatureScheme` checks a signature against a
public key. Production uses Ed25519 (PyNaCl). The interfaces exist so that the simulator
may swap in a cheap insecure scheme for long sweeps; the core never depends on which.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import nacl.exceptions
import nacl.signing

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Signer(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class SignatureScheme(Protocol):
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool: ...


class Ed25519Signer:
    """An Ed25519 private key (32-byte seed)."""

    __slots__ = ("_key", "_public")

    def __init__(self, seed: bytes) -> None:
        assert len(seed) == 32, "an Ed25519 seed is 32 bytes"
        self._key = nacl.signing.SigningKey(seed)
        self._public = bytes(self._key.verify_key)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key.sign(message).signature
        return signature


class Ed25519Scheme:
    """Ed25519 verification with the parsed public keys cached (parsing costs ~10%)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[bytes, nacl.signing.VerifyKey] = {}

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = self._keys.get(public_key)
        if key is None:
            key = self._keys[public_key] = nacl.signing.VerifyKey(public_key)
        try:
            key.verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            return False
        return True
