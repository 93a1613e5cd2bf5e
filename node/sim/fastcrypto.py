"""An insecure stand-in for Ed25519, for long simulator sweeps only.

A "signature" is a hash of the public key and the message: anyone can forge one, which
is fine in a simulator where every node runs our code (Byzantine twins hold the real
key anyway). It keeps the verifier's code paths and costs out of the way of sweeping
hundreds of thousands of rounds; `--crypto ed25519` runs the real thing.
"""

from __future__ import annotations

import hashlib


class InsecureSigner:
    __slots__ = ("public_key",)

    def __init__(self, seed: bytes) -> None:
        self.public_key = hashlib.sha256(b"insecure-sim-key" + seed).digest()

    def sign(self, message: bytes) -> bytes:
        return _tag(self.public_key, message)


class InsecureScheme:
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        return signature == _tag(public_key, message)


def _tag(public_key: bytes, message: bytes) -> bytes:
    return hashlib.sha512(public_key + message).digest()
