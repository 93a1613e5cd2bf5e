"""Share repair: t members jointly give member i its share of the committee key, and no
one (i included) learns another member's share (docs/PROTOCOL.md §10.11).

A member whose sealed share a qualified dealer spoiled while it was away never
complained, so the authentic dealings give it nothing (§10.10 refuses `unopened`). Its
share is still defined: xᵢ = Σ_{j∈H} λⱼ(i)·xⱼ for any set H of t members, λⱼ(i) the
Lagrange coefficient at i over H. The repairable-threshold technique (Laing and
Stinson, "A survey and refinement of repairable threshold schemes", IACR ePrint
2017/1155; FROST's `repairable` module) computes that sum without revealing its terms:

1. the requester i names the helper set H (t members) and a fresh session id;
2. each helper j splits λⱼ(i)·xⱼ into t random additive pieces δⱼ,ₖ (one per helper k),
   commits to each, Dⱼ,ₖ = δⱼ,ₖ·G, signs the commitment vector with its identity key,
   and sends helper k the piece δⱼ,ₖ with the signed vector;
3. helper k checks every piece against the signed vector, and the vector against j's
   public verification key: Σₖ Dⱼ,ₖ = λⱼ(i)·Xⱼ. It sends i the sum σₖ = Σⱼ δⱼ,ₖ with
   the signed vectors it used, and keeps no piece;
4. i checks each signed vector the same way, that every helper forwarded the same vector
   of j (two different vectors signed by j prove j equivocated), and σₖ·G = Σⱼ Dⱼ,ₖ;
   then xᵢ = Σₖ σₖ, and xᵢ·G = Xᵢ (which the checks before imply) is checked again.

Every check uses public data (the replicated key record's Xⱼ, the members' identity
keys) and what the checker received, so a failed check names the member at fault: the
sender of a message (the transport authenticates it), or the signer of a vector. A
helper that is not proven at fault but did not finish only delays i, which asks another
helper set. What a single helper sees (t random pieces, points) is independent of the
shares; i sees t random scalars that sum to its own share.

Pure: the caller supplies the random pieces (`split`) and the signing function; no I/O,
no clock. Members are 1-based here, as in the DKG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from node.fairness.errors import FairnessError
from node.fairness.group import (
    N,
    Point,
    add,
    base_mul,
    decode_point,
    decode_scalar,
    encode_point,
    hash_bytes,
    mul,
    scalar_bytes,
    u16,
    u64,
)
from node.fairness.threshold import MAX_MEMBERS, KeyShare, lagrange_at

SID_BYTES: Final = 16  # the requester's fresh id of one repair session
SIGNATURE_BYTES: Final = 64  # Ed25519
MAX_HELPERS: Final = (MAX_MEMBERS - 1) // 3 + 1  # t of the largest committee: 43
_STATEMENT: Final = b"seqnet/repair/commitments/v1"
_SIGNED_PREFIX: Final = b"seqnet/repair/v1\x00"

Sign = Callable[[bytes], bytes]  # message -> 64-byte Ed25519 signature


@dataclass(frozen=True, slots=True)
class RepairSession:
    """What the requester and every helper of one repair agree on: the DKG run's session
    (binds chain, epoch, members), the epoch, the requester, its session id, the helpers
    in the requester's order."""

    run_session: bytes
    epoch: int
    requester: int
    sid: bytes
    helpers: tuple[int, ...]

    def check(self, members: int, threshold: int) -> None:
        """`FairnessError("bad_helpers")` unless the helpers are t distinct other members."""
        helpers = self.helpers
        if len(self.sid) != SID_BYTES:
            raise FairnessError("bad_session", f"a session id is {SID_BYTES} bytes")
        if not 1 <= self.requester <= members:
            raise FairnessError("bad_helpers", f"requester {self.requester} is not a member")
        if (
            len(helpers) != threshold
            or len(set(helpers)) != len(helpers)
            or self.requester in helpers
            or not all(1 <= h <= members for h in helpers)
        ):
            raise FairnessError(
                "bad_helpers", f"helpers {list(helpers)}: need {threshold} distinct other members"
            )

    def position(self, helper: int) -> int:
        return self.helpers.index(helper)

    def lagrange(self, helper: int) -> int:
        """λ_helper(requester) over the helper set."""
        return lagrange_at(self.helpers, self.requester)[helper]

    def statement(self, helper: int, commitments: Sequence[bytes]) -> bytes:
        """What `helper` signs: its commitment vector for this session."""
        digest = hash_bytes(
            _STATEMENT,
            self.run_session,
            u64(self.epoch),
            u16(self.requester),
            self.sid,
            b"".join(map(u16, self.helpers)),
            u16(helper),
            *commitments,
        )
        return _SIGNED_PREFIX + digest


# -- a helper's own pieces -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deal:
    """Helper j's split of λⱼ(i)·xⱼ: the pieces (helper order), their commitments and
    j's signature over them. The pieces are secret: piece k goes to helper k only."""

    helper: int
    pieces: tuple[int, ...]
    commitments: tuple[bytes, ...]
    signature: bytes


def deal(session: RepairSession, share: KeyShare, randoms: Sequence[int], sign: Sign) -> Deal:
    """Split λⱼ(i)·xⱼ into t pieces: `randoms` (t − 1 fresh random scalars in 1 … N−1,
    from the caller's CSPRNG) and the remainder. `FairnessError("zero_piece")` when the
    remainder is 0 (probability 2^-256: draw again)."""
    t = len(session.helpers)
    assert len(randoms) == t - 1 and all(0 < r < N for r in randoms)
    value = session.lagrange(share.index) * share.secret % N
    last = (value - sum(randoms)) % N
    if last == 0:
        raise FairnessError("zero_piece", "the last piece is zero: draw the pieces again")
    pieces = (*randoms, last)
    commitments = tuple(encode_point(base_mul(p)) for p in pieces)
    signature = sign(session.statement(share.index, commitments))
    assert len(signature) == SIGNATURE_BYTES
    return Deal(share.index, pieces, commitments, signature)


# -- checks --------------------------------------------------------------------------------


def check_vector(
    session: RepairSession,
    helper: int,
    commitments: Sequence[bytes],
    signature: bytes,
    verification_key: bytes,
    identity_key: bytes,
) -> tuple[Point, ...]:
    """Helper `helper`'s signed commitment vector, checked against public data only:
    `FairnessError("bad_signature")` if `helper` did not sign it (the one who passed it
    on forged it); with a valid signature, `bad_count`, `bad_point` or `bad_commitments`
    (Σₖ Dₖ ≠ λ·Xⱼ) are the signer's fault."""
    try:
        VerifyKey(identity_key).verify(session.statement(helper, commitments), signature)
    except (BadSignatureError, ValueError):
        raise FairnessError("bad_signature", f"not helper {helper}'s signed commitments") from None
    if len(commitments) != len(session.helpers):
        raise FairnessError("bad_count", f"{len(commitments)} commitments", helper)
    try:
        points = tuple(decode_point(c, "piece commitment") for c in commitments)
    except FairnessError as error:
        raise FairnessError(error.code, error.message, helper) from None
    expected = mul(decode_point(verification_key, "verification key"), session.lagrange(helper))
    try:
        total = encode_point(add(points))
    except FairnessError:
        total = b""
    if total != encode_point(expected):
        raise FairnessError("bad_commitments", "the commitments do not sum to λ·Xⱼ", helper)
    return points


def check_piece(piece: bytes, commitment: Point) -> int:
    """A piece δ (32 bytes) against its commitment: `bad_piece` unless δ·G = D."""
    try:
        delta = decode_scalar(piece, "piece", nonzero=True)
    except FairnessError:
        raise FairnessError("bad_piece", "a piece must be a scalar in 1 … N−1") from None
    if encode_point(base_mul(delta)) != encode_point(commitment):
        raise FairnessError("bad_piece", "the piece does not match its commitment")
    return delta


@dataclass(frozen=True, slots=True)
class Fault:
    """A check failed; `member` (1-based) is proven at fault, or None when no one is
    (the final xᵢ·G = Xᵢ check, which the earlier checks imply)."""

    member: int | None
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Repaired:
    share: KeyShare


def _fault(error: FairnessError, sender: int) -> Fault:
    """A failed vector check: the signer's fault once its signature holds, else the
    sender's (it passed on what the signer never signed)."""
    member = sender if error.code == "bad_signature" else (error.member or sender)
    return Fault(member, error.code, error.message)


class _Vectors:
    """Checked commitment vectors of one session, one per helper: a second, different
    vector validly signed by the same helper proves it equivocated."""

    def __init__(self, session: RepairSession, keys: Sequence[bytes], identities: Sequence[bytes]):
        self._session = session
        self._keys = keys
        self._identities = identities
        self.raw: dict[int, tuple[bytes, ...]] = {}
        self.signatures: dict[int, bytes] = {}
        self.points: dict[int, tuple[Point, ...]] = {}

    def accept(
        self, sender: int, helper: int, commitments: Sequence[bytes], signature: bytes
    ) -> None:
        """Raises FairnessError with `member` set to the one at fault."""
        commitments = tuple(commitments)
        known = self.raw.get(helper)
        if known == commitments and self.signatures[helper] == signature:
            return
        try:
            points = check_vector(
                self._session,
                helper,
                commitments,
                signature,
                self._keys[helper - 1],
                self._identities[helper - 1],
            )
        except FairnessError as error:
            fault = _fault(error, sender)
            raise FairnessError(fault.code, fault.detail, fault.member) from None
        if known is not None:
            if known != commitments:
                raise FairnessError("equivocation", "two signed commitment vectors", helper)
            return  # the same vector, another valid signature (Ed25519 is deterministic)
        self.raw[helper], self.signatures[helper], self.points[helper] = (
            commitments,
            signature,
            points,
        )


class HelperRound:
    """Helper k's part of one session: its own deal, the pieces the other helpers send
    it, and, once it has all t, the sum for the requester. Bounded: one piece per helper.
    The caller drops the round after `answer` (no piece is kept)."""

    def __init__(
        self,
        session: RepairSession,
        me: int,
        own: Deal,
        verification_keys: Sequence[bytes],
        identity_keys: Sequence[bytes],
    ) -> None:
        assert me in session.helpers and own.helper == me
        self.session = session
        self.me = me
        self._vectors = _Vectors(session, verification_keys, identity_keys)
        self._vectors.raw[me] = own.commitments
        self._vectors.signatures[me] = own.signature
        self._vectors.points[me] = tuple(decode_point(c) for c in own.commitments)
        self._pieces: dict[int, int] = {me: own.pieces[session.position(me)]}

    def receive(
        self, sender: int, commitments: Sequence[bytes], signature: bytes, piece: bytes
    ) -> Fault | None:
        """Helper `sender`'s piece for us with its signed vector: None when accepted."""
        session = self.session
        if sender not in session.helpers or sender == self.me:
            return Fault(sender, "unasked", f"member {sender} is not a helper of this session")
        if sender in self._pieces:
            return Fault(sender, "duplicate", "a second piece from the same helper")
        try:
            self._vectors.accept(sender, sender, commitments, signature)
            position = session.position(self.me)
            self._pieces[sender] = check_piece(piece, self._vectors.points[sender][position])
        except FairnessError as error:
            return Fault(error.member or sender, error.code, error.message)
        return None

    def complete(self) -> bool:
        return len(self._pieces) == len(self.session.helpers)

    def answer(self) -> tuple[bytes, list[list[object]]]:
        """σₖ (32 bytes) and the signed vectors used, in helper order."""
        assert self.complete()
        sigma = sum(self._pieces.values()) % N
        self._pieces.clear()
        vectors = self._vectors
        forwarded: list[list[object]] = [
            [list(vectors.raw[h]), vectors.signatures[h]] for h in self.session.helpers
        ]
        return scalar_bytes(sigma), forwarded


class RequesterRound:
    """The requester's part of one session: it checks each helper's sum against the
    signed vectors and, with all t, returns the repaired share."""

    def __init__(
        self,
        session: RepairSession,
        verification_keys: Sequence[bytes],
        identity_keys: Sequence[bytes],
    ) -> None:
        self.session = session
        self._own_key = verification_keys[session.requester - 1]
        self._vectors = _Vectors(session, verification_keys, identity_keys)
        self._sums: dict[int, int] = {}

    def answered(self) -> frozenset[int]:
        return frozenset(self._sums)

    def receive(
        self, sender: int, sigma: bytes, forwarded: Sequence[tuple[Sequence[bytes], bytes]]
    ) -> Fault | Repaired | None:
        """Helper `sender`'s sum with the vectors it used: None when accepted and more are
        due, `Repaired` with the last one, `Fault` naming who is proven at fault."""
        session = self.session
        if sender not in session.helpers:
            return Fault(sender, "unasked", f"member {sender} is not a helper of this session")
        if sender in self._sums:
            return Fault(sender, "duplicate", "a second sum from the same helper")
        if len(forwarded) != len(session.helpers):
            return Fault(sender, "bad_count", f"{len(forwarded)} vectors forwarded")
        try:
            for helper, (commitments, signature) in zip(session.helpers, forwarded, strict=True):
                self._vectors.accept(sender, helper, commitments, signature)
            value = decode_scalar(sigma, "sum", nonzero=True)
        except FairnessError as error:
            code = "bad_sum" if error.code == "bad_scalar" else error.code
            return Fault(error.member or sender, code, error.message)
        position = session.position(sender)
        try:
            expected = encode_point(add(self._vectors.points[h][position] for h in session.helpers))
        except FairnessError:  # the pieces' commitments sum to the identity: σ = 0 then
            expected = b""
        if encode_point(base_mul(value)) != expected:
            return Fault(sender, "bad_sum", "σ·G is not the sum of its pieces' commitments")
        self._sums[sender] = value
        if len(self._sums) < len(session.helpers):
            return None
        x = sum(self._sums.values()) % N
        self._sums.clear()
        if not x or encode_point(base_mul(x)) != self._own_key:
            return Fault(None, "wrong_share", "the sums do not give our verification key")
        return Repaired(KeyShare(session.requester, x))
