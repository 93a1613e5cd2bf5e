"""Zero-knowledge proofs, made non-interactive with a domain-separated hash (Fiat-Shamir).

- DLEQ (Chaum-Pedersen): for bases G and H, X = x·G and Y = x·H have the same discrete
  log x. A decryption share Uᵢ = xᵢ·R proves it used the secret behind the public
  verification share Xᵢ; a DKG complaint proves the shared key it reveals is its own.
- Schnorr proof of knowledge of r for R = r·G: a trader's KEM ciphertext proves its
  author knows r, bound to a label (the envelope's header), so no one can copy R into
  an envelope of their own and have the committee decrypt it early (the attack that
  makes plain threshold ElGamal non-CCA; Shoup-Gennaro's TDH1 answers it this way).

Both proofs are (c, z): 64 bytes, the challenge and the response. Proof nonces are
derived from the secret and the statement (as RFC 6979 does for ECDSA), never drawn at
random: the room is pure, and a nonce cannot repeat for two different statements.
Every statement element and the caller's `context` go into the challenge.
"""

from __future__ import annotations

from typing import Final

from node.fairness.errors import FairnessError
from node.fairness.group import (
    N,
    Point,
    base_mul,
    decode_scalar,
    double_mul,
    encode_point,
    hash_to_nonzero_scalar,
    hash_to_scalar,
    lincomb,
    mul,
    scalar_bytes,
)

PROOF_BYTES: Final = 64
_DLEQ: Final = b"seqnet/fairness/dleq/v1"
_DLEQ_NONCE: Final = b"seqnet/fairness/dleq-nonce/v1"
_POK: Final = b"seqnet/fairness/schnorr/v1"
_POK_NONCE: Final = b"seqnet/fairness/schnorr-nonce/v1"


def _split(proof: bytes) -> tuple[int, int]:
    if len(proof) != PROOF_BYTES:
        raise FairnessError("bad_proof", f"a proof is {PROOF_BYTES} bytes")
    return decode_scalar(proof[:32], "proof challenge"), decode_scalar(proof[32:], "proof response")


def _dleq_challenge(context: bytes, h: Point, x: Point, y: Point, a1: Point, a2: Point) -> int:
    parts = (encode_point(p) for p in (h, x, y, a1, a2))
    return hash_to_scalar(_DLEQ, context, *parts)


def prove_dleq(
    secret: int, h: Point, context: bytes, x: Point | None = None, y: Point | None = None
) -> bytes:
    """Proof that log_G(secret·G) = log_H(secret·H). `x` = secret·G and `y` = secret·H
    may be passed when the caller has them (each costs a scalar multiplication)."""
    assert 0 < secret < N
    x = base_mul(secret) if x is None else x
    y = mul(h, secret) if y is None else y
    w = hash_to_nonzero_scalar(_DLEQ_NONCE, scalar_bytes(secret), context, encode_point(h))
    c = _dleq_challenge(context, h, x, y, base_mul(w), mul(h, w))
    return scalar_bytes(c) + scalar_bytes((w + c * secret) % N)


def verify_dleq(h: Point, x: Point, y: Point, proof: bytes, context: bytes) -> bool:
    """True iff `proof` shows log_G(x) = log_H(y). A malformed proof is False, not an error."""
    try:
        c, z = _split(proof)
        a1 = double_mul(z, N - c, x)  # z·G − c·X
        a2 = lincomb(((h, z), (y, N - c)))  # z·H − c·Y
    except FairnessError:
        return False
    return _dleq_challenge(context, h, x, y, a1, a2) == c


def prove_knowledge(secret: int, label: bytes) -> bytes:
    """Schnorr proof of knowledge of `secret` for R = secret·G, bound to `label`."""
    assert 0 < secret < N
    r = base_mul(secret)
    w = hash_to_nonzero_scalar(_POK_NONCE, scalar_bytes(secret), label)
    c = hash_to_scalar(_POK, label, encode_point(r), encode_point(base_mul(w)))
    return scalar_bytes(c) + scalar_bytes((w + c * secret) % N)


def verify_knowledge(r: Point, proof: bytes, label: bytes) -> bool:
    """True iff `proof` shows knowledge of log_G(r) under `label`."""
    try:
        c, z = _split(proof)
        w_point = double_mul(z, N - c, r)  # z·G − c·R
    except FairnessError:
        return False
    return hash_to_scalar(_POK, label, encode_point(r), encode_point(w_point)) == c
