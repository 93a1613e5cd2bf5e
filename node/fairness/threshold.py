"""The committee's threshold key and the threshold ElGamal KEM on secp256k1.

A committee key is a degree t−1 polynomial's constant term x, which no one holds:
member i holds xᵢ = f(i) and everyone knows X = x·G and the verification shares
Xᵢ = xᵢ·G. Any t shares recover x·P for a point P by Lagrange interpolation in the
exponent; t−1 shares say nothing about it. For a committee of n = 3f+1, t = f+1: the
f faulty members cannot decrypt alone, and the 2f+1 honest ones can without them.

KEM (hashed ElGamal): a sender picks r, sends R = r·G with a Schnorr proof that it knows
r (bound to a label: the envelope header), and keys its AEAD with
K = H(R ‖ r·X ‖ X). Member i publishes Uᵢ = xᵢ·R with a DLEQ proof against Xᵢ; any t
valid shares give r·X = x·R = Σ λᵢ·Uᵢ. A forged share fails its proof and names its
member; a withheld one is replaced by any other valid one.

`dealer_keygen` makes a key with one party knowing x, for tests and local development
only: it refuses any chain but the development chain. Production keys come from the
DKG (dkg.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from node.fairness.errors import FairnessError
from node.fairness.group import (
    POINT_BYTES,
    N,
    Point,
    base_mul,
    decode_point,
    decode_scalar,
    encode_point,
    hash_bytes,
    hash_to_nonzero_scalar,
    lincomb,
    mul,
    u16,
)
from node.fairness.proofs import (
    PROOF_BYTES,
    prove_dleq,
    prove_knowledge,
    verify_dleq,
    verify_knowledge,
)

MAX_MEMBERS: Final = 128  # committee members a key may have (indices are u16 on the wire)
KEY_VERSION: Final = 1
KEM_BYTES: Final = POINT_BYTES + PROOF_BYTES  # R ‖ Schnorr proof = 97
SHARE_BYTES: Final = 2 + POINT_BYTES + PROOF_BYTES  # index ‖ Uᵢ ‖ DLEQ proof = 99
KEY_BYTES: Final = 32
# Equal to node.runtime.options.DEV_CHAIN_ID (a test checks it); not imported because
# that package pulls in the whole runtime and this room is pure.
DEV_CHAIN_ID: Final = 31337

_KEY_ID: Final = b"seqnet/fairness/key-id/v1"
_KEM_R: Final = b"seqnet/fairness/kem-r/v1"
_KEM_KEY: Final = b"seqnet/fairness/kem-key/v1"
_SHARE: Final = b"seqnet/fairness/share/v1"
_DEALER: Final = b"seqnet/fairness/dealer/v1"


# ---------------------------------------------------------------------------------------
# Polynomials (Shamir / Feldman), shared with the DKG


def poly_eval(coefficients: Sequence[int], x: int) -> int:
    """f(x) mod N, Horner's rule; coefficients[0] is the constant term."""
    result = 0
    for c in reversed(coefficients):
        result = (result * x + c) % N
    return result


def commitment_eval(commitments: Sequence[Point], x: int) -> Point:
    """Σ x^l·C_l: f(x)·G from Feldman commitments C_l = a_l·G."""
    return lincomb((c, pow(x, k, N)) for k, c in enumerate(commitments))


def lagrange_at(indices: Sequence[int], x: int) -> dict[int, int]:
    """λⱼ with f(x) = Σ λⱼ·f(j) for distinct nonzero indices j (f of degree < len)."""
    assert len(set(indices)) == len(indices) and all(0 < i < N for i in indices)
    coefficients = {}
    for j in indices:
        num, den = 1, 1
        for k in indices:
            if k != j:
                num = num * (x - k) % N
                den = den * (j - k) % N
        coefficients[j] = num * pow(den, -1, N) % N
    return coefficients


def lagrange_at_zero(indices: Sequence[int]) -> dict[int, int]:
    """λᵢ with f(0) = Σ λᵢ·f(i) for distinct nonzero indices (combination, §10.4)."""
    return lagrange_at(indices, 0)


# ---------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True, slots=True)
class ThresholdPublicKey:
    """What genesis and epoch records publish: the threshold, X and X₁ … Xₙ.

    Bytes: version (1) ‖ t (u16) ‖ n (u16) ‖ X (33) ‖ X₁ … Xₙ (33 each). `key_id` is
    SHA-256 over them (domain-tagged) and names the key in every share proof."""

    threshold: int
    public_key: bytes
    verification_shares: tuple[bytes, ...]
    key_id: bytes = field(init=False, repr=False, compare=False)
    _points: tuple[Point, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.verification_shares)
        if not 1 <= n <= MAX_MEMBERS:
            raise FairnessError("bad_key", f"a key has 1 … {MAX_MEMBERS} members, not {n}")
        if not 1 <= self.threshold <= n:
            raise FairnessError("bad_key", f"threshold {self.threshold} not in 1 … {n}")
        points = tuple(
            decode_point(p, what)
            for p, what in [(self.public_key, "public key")]
            + [(s, f"verification share {i + 1}") for i, s in enumerate(self.verification_shares)]
        )
        object.__setattr__(self, "_points", points)
        object.__setattr__(self, "key_id", hash_bytes(_KEY_ID, self.encode()))

    @property
    def members(self) -> int:
        return len(self.verification_shares)

    @property
    def point(self) -> Point:
        return self._points[0]

    def verification_point(self, index: int) -> Point:
        return self._points[index]

    def encode(self) -> bytes:
        return (
            bytes([KEY_VERSION])
            + u16(self.threshold)
            + u16(self.members)
            + self.public_key
            + b"".join(self.verification_shares)
        )

    @classmethod
    def decode(cls, data: bytes) -> ThresholdPublicKey:
        if len(data) < 5 or data[0] != KEY_VERSION:
            raise FairnessError("bad_key", "not a version 1 threshold key")
        t, n = int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:5], "big")
        if len(data) != 5 + POINT_BYTES * (n + 1):
            raise FairnessError("bad_key", f"a key with {n} members is {5 + 33 * (n + 1)} bytes")
        points = [data[5 + POINT_BYTES * k : 5 + POINT_BYTES * (k + 1)] for k in range(n + 1)]
        return cls(t, points[0], tuple(points[1:]))

    @classmethod
    def from_commitments(
        cls, threshold: int, commitments: Sequence[Point], n: int
    ) -> ThresholdPublicKey:
        """The key whose secret polynomial has Feldman commitments `commitments`."""
        assert len(commitments) == threshold
        shares = tuple(encode_point(commitment_eval(commitments, i)) for i in range(1, n + 1))
        return cls(threshold, encode_point(commitments[0]), shares)


@dataclass(frozen=True, slots=True)
class KeyShare:
    """Member `index`'s secret share xᵢ (never leaves the member)."""

    index: int
    secret: int = field(repr=False)

    def __post_init__(self) -> None:
        assert 1 <= self.index <= MAX_MEMBERS and 0 < self.secret < N


def dealer_keygen(
    n: int, t: int, seed: bytes, *, chain_id: int
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """A key dealt by one party that knows the secret: tests and dev chains only."""
    if chain_id != DEV_CHAIN_ID:
        raise FairnessError(
            "dealer_refused", f"dealer mode runs only on the development chain {DEV_CHAIN_ID}"
        )
    if not 1 <= t <= n <= MAX_MEMBERS:
        raise FairnessError("bad_key", f"need 1 ≤ t ≤ n ≤ {MAX_MEMBERS}")
    coefficients = [hash_to_nonzero_scalar(_DEALER, seed, u16(k)) for k in range(t)]
    public = ThresholdPublicKey.from_commitments(t, [base_mul(a) for a in coefficients], n)
    shares = tuple(KeyShare(i, poly_eval(coefficients, i)) for i in range(1, n + 1))
    assert all(s.secret != 0 for s in shares)
    return public, shares


# ---------------------------------------------------------------------------------------
# The KEM


def _kem_key(r_point: Point, shared: Point, public: ThresholdPublicKey) -> bytes:
    return hash_bytes(_KEM_KEY, encode_point(r_point), encode_point(shared), public.public_key)


def encapsulate(public: ThresholdPublicKey, label: bytes, seed: bytes) -> tuple[bytes, bytes]:
    """(KEM ciphertext R ‖ proof, 32-byte key). `seed`: 32 fresh random bytes; the same
    seed and label give the same ciphertext (test vectors), so never reuse one."""
    if len(seed) != 32:
        raise FairnessError("bad_seed", "the encryption seed is 32 random bytes")
    r = hash_to_nonzero_scalar(_KEM_R, seed, label, public.public_key)
    r_point = base_mul(r)
    ciphertext = encode_point(r_point) + prove_knowledge(r, label)
    return ciphertext, _kem_key(r_point, mul(public.point, r), public)


def open_ciphertext(ciphertext: bytes, label: bytes) -> Point:
    """R from a KEM ciphertext whose proof of knowledge holds for `label`.

    A member checks this before it ever makes a decryption share for R."""
    if len(ciphertext) != KEM_BYTES:
        raise FairnessError("bad_kem", f"a KEM ciphertext is {KEM_BYTES} bytes")
    r_point = decode_point(ciphertext[:POINT_BYTES], "KEM point")
    decode_scalar(ciphertext[POINT_BYTES : POINT_BYTES + 32], "KEM proof challenge")
    decode_scalar(ciphertext[POINT_BYTES + 32 :], "KEM proof response")
    if not verify_knowledge(r_point, ciphertext[POINT_BYTES:], label):
        raise FairnessError("bad_kem_proof", "the KEM proof of knowledge does not verify")
    return r_point


# ---------------------------------------------------------------------------------------
# Decryption shares


@dataclass(frozen=True, slots=True)
class DecryptionShare:
    """Uᵢ = xᵢ·R with a DLEQ proof; bytes: index (u16) ‖ Uᵢ (33) ‖ proof (64)."""

    index: int
    point: bytes
    proof: bytes

    def encode(self) -> bytes:
        return u16(self.index) + self.point + self.proof

    @classmethod
    def decode(cls, data: bytes) -> DecryptionShare:
        """Sizes only; `verify_share` checks the rest."""
        if len(data) != SHARE_BYTES:
            raise FairnessError("bad_share", f"a decryption share is {SHARE_BYTES} bytes")
        return cls(int.from_bytes(data[:2], "big"), data[2:35], data[35:])


def _share_context(public: ThresholdPublicKey, index: int) -> bytes:
    return hash_bytes(_SHARE, public.key_id, u16(index))


def create_share(share: KeyShare, public: ThresholdPublicKey, r_point: Point) -> DecryptionShare:
    """This member's share for R (which `open_ciphertext` checked)."""
    assert share.index <= public.members
    x_i = public.verification_point(share.index)
    u = mul(r_point, share.secret)
    context = _share_context(public, share.index)
    proof = prove_dleq(share.secret, r_point, context, x_i, u)
    return DecryptionShare(share.index, encode_point(u), proof)


def verify_share(public: ThresholdPublicKey, r_point: Point, share: DecryptionShare) -> bool:
    """True iff `share` is member `share.index`'s correct share for R."""
    if not 1 <= share.index <= public.members or len(share.proof) != PROOF_BYTES:
        return False
    try:
        u = decode_point(share.point, "share")
    except FairnessError:
        return False
    x_i = public.verification_point(share.index)
    return verify_dleq(r_point, x_i, u, share.proof, _share_context(public, share.index))


@dataclass(frozen=True, slots=True)
class Combined:
    """The decapsulated key, the members whose shares made it and those whose failed."""

    key: bytes
    used: tuple[int, ...]
    invalid: tuple[int, ...]


def combine(
    public: ThresholdPublicKey,
    r_point: Point,
    shares: Iterable[DecryptionShare],
    *,
    verified: bool = False,
) -> Combined:
    """The key from the first t valid shares of distinct members.

    Invalid shares (a bad proof, an index out of range) are skipped and named in
    `invalid`; a repeated share, or any share of a member already counted, costs nothing.
    A forged share under an honest member's index does not shut out the real one, so the
    caller bounds `shares` (a member keeps one share per member and envelope, taken from
    that member's authenticated link). `verified`: the caller already checked every
    share (as a member does when shares arrive), so none is re-checked. Fewer than t
    valid shares: `not_enough_shares`."""
    valid: dict[int, Point] = {}
    invalid: list[int] = []
    seen: set[bytes] = set()
    for share in shares:
        if len(valid) == public.threshold:
            break
        encoded = share.encode()
        if share.index in valid or encoded in seen:
            continue
        seen.add(encoded)
        if verified or verify_share(public, r_point, share):
            valid[share.index] = decode_point(share.point, "share")
        else:
            invalid.append(share.index)
    if len(valid) < public.threshold:
        raise FairnessError(
            "not_enough_shares", f"{len(valid)} valid shares of {public.threshold} needed"
        )
    lambdas = lagrange_at_zero(list(valid))
    shared = lincomb((valid[i], lambdas[i]) for i in valid)
    return Combined(_kem_key(r_point, shared, public), tuple(valid), tuple(invalid))
