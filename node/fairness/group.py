"""The prime-order group: secp256k1 through coincurve (libsecp256k1).

Scalars are Python ints modulo the group order `N`; points are `coincurve.PublicKey`
objects and travel as 33-byte compressed encodings. secp256k1 has cofactor 1, so every
point that parses is in the group: no subgroup check is needed (docs/FAIRNESS.md "Why
secp256k1"). The point at infinity cannot be encoded and is never accepted; a sum that
would be it is refused (`identity`), which honest inputs reach only with negligible
probability.

Hashes are SHA-512 reduced mod N (a bias below 2^-256) for scalars and SHA-256 for
keys, each input prefixed by a domain tag and every part by its length, so no two
different inputs of one tag can collide by re-splitting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import coincurve

from node.fairness.errors import FairnessError

N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_BYTES: Final = 33
SCALAR_BYTES: Final = 32

Point = coincurve.PublicKey


def scalar_bytes(k: int) -> bytes:
    """32 bytes big-endian of a scalar in 0 … N−1."""
    assert 0 <= k < N, "scalar out of range"
    return k.to_bytes(SCALAR_BYTES, "big")


def decode_scalar(data: bytes, what: str = "scalar", *, nonzero: bool = False) -> int:
    """A canonical 32-byte scalar (< N; refused if zero when `nonzero`)."""
    if len(data) != SCALAR_BYTES:
        raise FairnessError("bad_scalar", f"{what} must be {SCALAR_BYTES} bytes")
    k = int.from_bytes(data, "big")
    if k >= N or (nonzero and k == 0):
        raise FairnessError("bad_scalar", f"{what} out of range")
    return k


def encode_point(p: Point) -> bytes:
    encoded: bytes = p.format(compressed=True)
    return encoded


def decode_point(data: bytes, what: str = "point") -> Point:
    """A 33-byte compressed point on the curve (02/03 prefix); never the identity."""
    if len(data) != POINT_BYTES or data[0] not in (2, 3):
        raise FairnessError("bad_point", f"{what} must be a 33-byte compressed point")
    try:
        return coincurve.PublicKey(data)
    except ValueError:
        raise FairnessError("bad_point", f"{what} is not on secp256k1") from None


def base_mul(k: int) -> Point:
    """k·G for k in 1 … N−1."""
    assert 0 < k < N, "scalar out of range"
    return coincurve.PublicKey.from_secret(scalar_bytes(k))


def mul(p: Point, k: int) -> Point:
    """k·P for k in 1 … N−1."""
    assert 0 < k < N, "scalar out of range"
    return p.multiply(scalar_bytes(k))


def add(points: Iterable[Point]) -> Point:
    """The sum of one or more points; `identity` if it is the point at infinity."""
    terms = list(points)
    assert terms, "empty sum"
    if len(terms) == 1:
        return terms[0]
    try:
        return coincurve.PublicKey.combine_keys(terms)
    except ValueError:
        raise FairnessError("identity", "the sum is the point at infinity") from None


def double_mul(a: int, b: int, p: Point) -> Point:
    """a·G + b·P in one libsecp256k1 call, for public inputs only (verification).

    coincurve exposes no multi-scalar multiplication, but ECDSA public-key recovery is
    one: for a signature (r, s) with recovery id v on message hash e, libsecp256k1
    returns Q = r⁻¹·(s·R − e·G), where R is the point with x-coordinate r and parity v,
    through its variable-time Strauss-wNAF `ecmult` (the routine behind every ECDSA
    verification). With R = P, r = x(P), s = b·r and e = −a·r this is a·G + b·P: about
    1.5× faster than a fixed-base and a variable-base multiplication and an addition,
    and not constant-time, which is why proofs are never *made* with it. The rare inputs
    it cannot express (b = 0, x(P) ≥ N: probability 2^-128) take the plain path."""
    a %= N
    b %= N
    encoded = encode_point(p)
    r = int.from_bytes(encoded[1:], "big")
    if b == 0 or r >= N:
        return lincomb(((None, a), (p, b)))
    signature = encoded[1:] + scalar_bytes(b * r % N) + bytes([encoded[0] - 2])
    try:
        return coincurve.PublicKey.from_signature_and_message(
            signature, scalar_bytes(-a * r % N), hasher=None
        )
    except ValueError:  # the result is the point at infinity
        raise FairnessError("identity", "the sum is the point at infinity") from None


def lincomb(terms: Iterable[tuple[Point | None, int]]) -> Point:
    """Σ kᵢ·Pᵢ (None stands for the generator G); zero scalars drop out."""
    points = []
    for p, k in terms:
        k %= N
        if k:
            points.append(base_mul(k) if p is None else mul(p, k))
    if not points:
        raise FairnessError("identity", "the sum is the point at infinity")
    return add(points)


def _framed(tag: bytes, parts: Iterable[bytes]) -> bytes:
    out = bytearray(len(tag).to_bytes(2, "big") + tag)
    for part in parts:
        out += len(part).to_bytes(4, "big") + part
    return bytes(out)


def hash_to_scalar(tag: bytes, *parts: bytes) -> int:
    """A scalar in 0 … N−1 from SHA-512(framed(tag, parts)) mod N."""
    return int.from_bytes(hashlib.sha512(_framed(tag, parts)).digest(), "big") % N


def hash_to_nonzero_scalar(tag: bytes, *parts: bytes) -> int:
    """As `hash_to_scalar`, in 1 … N−1 (a zero result, probability 2^-256, is re-hashed)."""
    counter = 0
    while True:
        k = hash_to_scalar(tag, *parts, counter.to_bytes(4, "big"))
        if k:
            return k
        counter += 1  # pragma: no cover - probability 2^-256


def hash_bytes(tag: bytes, *parts: bytes) -> bytes:
    """32 bytes: SHA-256(framed(tag, parts)); for keys and digests."""
    return hashlib.sha256(_framed(tag, parts)).digest()


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")
