"""The committee's distributed key generation, as a pure state machine.

Joint-Feldman DKG (Pedersen 1991) with publicly verifiable complaints:

1. Each member i (a dealer) picks a random polynomial fᵢ of degree t−1 and broadcasts a
   *dealing*: Feldman commitments Cᵢₗ = aᵢₗ·G, an ephemeral point Eᵢ = e·G, and for every
   member j the share fᵢ(j) sealed with XChaCha20-Poly1305 under a key derived from
   e·Yⱼ, where Yⱼ is member j's DKG key (below).
2. Member j opens its share from every dealing and checks fᵢ(j)·G = Σ jˡ·Cᵢₗ. If the
   share does not open or does not match, j broadcasts a *complaint* that reveals
   Kᵢⱼ = yⱼ·Eᵢ with a DLEQ proof that it is the right one (log_G Yⱼ = log_Eᵢ Kᵢⱼ).
   Everyone can then open that one share and judge: the dealer is disqualified, or the
   complaint was false and the complainer is named. No dealer has to answer, so there
   is no third round, and the reveal exposes one share that was already bad.
3. At the end, the qualified set QUAL is every dealer with a well-formed dealing and no
   upheld complaint (at least t of them, so one is honest). The key is
   X = Σ Cᵢ₀, member j's share xⱼ = Σ fᵢ(j), and Xⱼ = Σᵢ Σₗ jˡ·Cᵢₗ; no one ever holds x.

The machine assumes what Pedersen's protocol assumes: a broadcast channel on which every
member sees the same messages in the same order, its own included. In seqnet that is the
committed log (phase 2 orders dealings and complaints as payload entries and closes each
phase at a committed height), so every honest member computes the same QUAL and key;
`transcript` digests them so members can confirm it. The machine does not apply its own
messages until the channel delivers them.

Known limit (Gennaro, Jarecki, Krawczyk, Rabin 1999): a rushing adversary can bias the
distribution of X by disqualifying its own dealings late. Gennaro et al. (CT-RSA 2003)
show that threshold Schnorr-type and ElGamal-type schemes stay secure with such a key,
so we accept it rather than pay for the extra Pedersen-commitment round.

Member DKG keys: a secp256k1 key per member, derived from its settlement key
(`member_key_from_settlement`) so no new key file is needed, yet distinct from it: the
settlement key signs checkpoints and never enters a DLEQ proof.

Every message has an exact size for its committee, checked before anything is parsed; a
malformed or dishonest message becomes a `Misbehaviour` action naming its sender.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from node.fairness.errors import FairnessError
from node.fairness.group import (
    POINT_BYTES,
    N,
    Point,
    add,
    base_mul,
    decode_point,
    decode_scalar,
    encode_point,
    hash_bytes,
    hash_to_nonzero_scalar,
    mul,
    scalar_bytes,
    u16,
    u64,
)
from node.fairness.proofs import PROOF_BYTES, prove_dleq, verify_dleq
from node.fairness.threshold import (
    MAX_MEMBERS,
    KeyShare,
    ThresholdPublicKey,
    commitment_eval,
    poly_eval,
)

DEALING: Final = 0x01
COMPLAINT: Final = 0x02
VERSION: Final = 1
SEALED_SHARE_BYTES: Final = 32 + 16  # share ‖ Poly1305 tag
COMPLAINT_BYTES: Final = 2 + 32 + 2 + 2 + POINT_BYTES + PROOF_BYTES  # 135
_AEAD_NONCE: Final = bytes(24)  # every share key is used once (fresh e per dealing)

_SESSION: Final = b"seqnet/dkg/session/v1"
_MEMBER_KEY: Final = b"seqnet/dkg/member-key/v1"
_COEFFICIENT: Final = b"seqnet/dkg/coefficient/v1"
_EPHEMERAL: Final = b"seqnet/dkg/ephemeral/v1"
_SHARE_KEY: Final = b"seqnet/dkg/share-key/v1"
_COMPLAINT: Final = b"seqnet/dkg/complaint/v1"
_COMMITMENTS: Final = b"seqnet/dkg/commitments/v1"
_TRANSCRIPT: Final = b"seqnet/dkg/transcript/v1"


def member_key_from_settlement(settlement_secret: bytes) -> int:
    """A member's DKG secret key, derived from its 32-byte settlement secret."""
    if len(settlement_secret) != 32:
        raise FairnessError("bad_key", "a settlement secret is 32 bytes")
    return hash_to_nonzero_scalar(_MEMBER_KEY, settlement_secret)


def member_public_key(secret: int) -> bytes:
    """Yⱼ = yⱼ·G, 33 bytes: what genesis publishes for the DKG."""
    return encode_point(base_mul(secret))


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class DkgConfig:
    """One DKG run: the committee's DKG keys (member i is `member_keys[i - 1]`), t, and
    the chain and epoch it is for. `session` binds every message to this run."""

    chain_id: int
    epoch: int
    threshold: int
    member_keys: tuple[bytes, ...]
    session: bytes = field(init=False, repr=False, compare=False)
    _points: tuple[Point, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.member_keys)
        if not 1 <= n <= MAX_MEMBERS:
            raise FairnessError("bad_config", f"a DKG has 1 … {MAX_MEMBERS} members, not {n}")
        if not 1 <= self.threshold <= n:
            raise FairnessError("bad_config", f"threshold {self.threshold} not in 1 … {n}")
        if not (0 <= self.chain_id < 2**64 and 0 <= self.epoch < 2**64):
            raise FairnessError("bad_config", "chain id and epoch are u64")
        if len(set(self.member_keys)) != n:
            raise FairnessError("bad_config", "two members share a DKG key")
        points = tuple(
            decode_point(k, f"member {i + 1}'s key") for i, k in enumerate(self.member_keys)
        )
        session = hash_bytes(
            _SESSION, u64(self.chain_id), u64(self.epoch), u16(self.threshold), *self.member_keys
        )
        object.__setattr__(self, "_points", points)
        object.__setattr__(self, "session", session)

    @property
    def members(self) -> int:
        return len(self.member_keys)

    def member_point(self, index: int) -> Point:
        return self._points[index - 1]

    @property
    def dealing_bytes(self) -> int:
        """The exact size of a dealing in this run."""
        t, n = self.threshold, self.members
        return 2 + 32 + 6 + POINT_BYTES * t + POINT_BYTES + SEALED_SHARE_BYTES * n


# ---------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Dealing:
    """kind 0x01 ‖ version ‖ session (32) ‖ dealer (u16) ‖ t (u16) ‖ n (u16) ‖
    C₀ … C_{t−1} (33 each) ‖ E (33) ‖ n sealed shares (48 each)."""

    dealer: int
    commitments: tuple[Point, ...]
    ephemeral: Point
    sealed: tuple[bytes, ...]
    raw: bytes

    def commitments_digest(self, session: bytes) -> bytes:
        return hash_bytes(
            _COMMITMENTS, session, u16(self.dealer), *map(encode_point, self.commitments)
        )


@dataclass(frozen=True, slots=True)
class Complaint:
    """kind 0x02 ‖ version ‖ session (32) ‖ complainer (u16) ‖ dealer (u16) ‖
    K (33) ‖ DLEQ proof (64)."""

    complainer: int
    dealer: int
    shared: Point
    proof: bytes


def _check_header(config: DkgConfig, data: bytes, kind: int, size: int) -> None:
    if len(data) != size:
        raise FairnessError(
            "bad_size", f"a message of kind {kind} is {size} bytes, not {len(data)}"
        )
    if data[1] != VERSION:
        raise FairnessError("bad_version", f"DKG message version {data[1]}, expected {VERSION}")
    if data[2:34] != config.session:
        raise FairnessError("wrong_session", "the message belongs to another DKG run")


def decode_dealing(config: DkgConfig, data: bytes) -> Dealing:
    _check_header(config, data, DEALING, config.dealing_bytes)
    dealer, t, n = (int.from_bytes(data[o : o + 2], "big") for o in (34, 36, 38))
    if not 1 <= dealer <= config.members:
        raise FairnessError("bad_index", f"dealer {dealer} is not a member")
    if (t, n) != (config.threshold, config.members):
        raise FairnessError("bad_shape", f"dealing for t={t}, n={n}")
    offset = 40
    commitments = []
    for k in range(t):
        commitments.append(decode_point(data[offset : offset + POINT_BYTES], f"commitment {k}"))
        offset += POINT_BYTES
    ephemeral = decode_point(data[offset : offset + POINT_BYTES], "ephemeral point")
    offset += POINT_BYTES
    sealed = tuple(
        data[offset + SEALED_SHARE_BYTES * k : offset + SEALED_SHARE_BYTES * (k + 1)]
        for k in range(n)
    )
    return Dealing(dealer, tuple(commitments), ephemeral, sealed, data)


def decode_complaint(config: DkgConfig, data: bytes) -> Complaint:
    _check_header(config, data, COMPLAINT, COMPLAINT_BYTES)
    complainer, dealer = int.from_bytes(data[34:36], "big"), int.from_bytes(data[36:38], "big")
    for who, index in (("complainer", complainer), ("dealer", dealer)):
        if not 1 <= index <= config.members:
            raise FairnessError("bad_index", f"{who} {index} is not a member")
    shared = decode_point(data[38 : 38 + POINT_BYTES], "revealed key")
    return Complaint(complainer, dealer, shared, data[38 + POINT_BYTES :])


def decode_message(config: DkgConfig, data: bytes) -> Dealing | Complaint:
    """A dealing or a complaint of `config`'s run, by its kind byte, or `FairnessError`."""
    if data[:1] == bytes((DEALING,)):
        return decode_dealing(config, data)
    if data[:1] == bytes((COMPLAINT,)):
        return decode_complaint(config, data)
    raise FairnessError("bad_kind", f"unknown DKG message kind {data[:1].hex() or 'empty'}")


def _share_key(
    config: DkgConfig, dealer: int, recipient: int, ephemeral: Point, shared: Point
) -> bytes:
    return hash_bytes(
        _SHARE_KEY,
        config.session,
        u16(dealer),
        u16(recipient),
        encode_point(ephemeral),
        encode_point(shared),
    )


def _share_ad(config: DkgConfig, dealing_digest: bytes, recipient: int) -> bytes:
    return config.session + dealing_digest + u16(recipient)


def make_dealing(config: DkgConfig, dealer: int, seed: bytes) -> bytes:
    """Dealer `dealer`'s dealing from 32 random bytes `seed`.

    Only honest dealings come out of here; the tests build bad ones from `seal_share`
    and `encode_dealing`."""
    if len(seed) != 32:
        raise FairnessError("bad_seed", "a dealing seed is 32 random bytes")
    assert 1 <= dealer <= config.members
    t, n = config.threshold, config.members
    coefficients = [
        hash_to_nonzero_scalar(_COEFFICIENT, seed, config.session, u16(k)) for k in range(t)
    ]
    commitments = tuple(base_mul(a) for a in coefficients)
    e = hash_to_nonzero_scalar(_EPHEMERAL, seed, config.session)
    ephemeral = base_mul(e)
    shares = [poly_eval(coefficients, j) for j in range(1, n + 1)]
    return encode_dealing(
        config,
        dealer,
        commitments,
        ephemeral,
        [
            seal_share(
                config,
                dealer,
                j,
                ephemeral,
                mul(config.member_point(j), e),
                commitments,
                shares[j - 1],
            )
            for j in range(1, n + 1)
        ],
    )


def seal_share(
    config: DkgConfig,
    dealer: int,
    recipient: int,
    ephemeral: Point,
    shared: Point,
    commitments: tuple[Point, ...],
    share: int,
) -> bytes:
    digest = Dealing(dealer, commitments, ephemeral, (), b"").commitments_digest(config.session)
    key = _share_key(config, dealer, recipient, ephemeral, shared)
    sealed: bytes = crypto_aead_xchacha20poly1305_ietf_encrypt(
        scalar_bytes(share), _share_ad(config, digest, recipient), _AEAD_NONCE, key
    )
    return sealed


def encode_dealing(
    config: DkgConfig,
    dealer: int,
    commitments: tuple[Point, ...],
    ephemeral: Point,
    sealed: list[bytes],
) -> bytes:
    data = (
        bytes([DEALING, VERSION])
        + config.session
        + u16(dealer)
        + u16(len(commitments))
        + u16(len(sealed))
        + b"".join(encode_point(c) for c in commitments)
        + encode_point(ephemeral)
        + b"".join(sealed)
    )
    return data


def _open_share(config: DkgConfig, dealing: Dealing, recipient: int, shared: Point) -> int | None:
    """The recipient's share if it opens and matches the commitments, else None."""
    key = _share_key(config, dealing.dealer, recipient, dealing.ephemeral, shared)
    ad = _share_ad(config, dealing.commitments_digest(config.session), recipient)
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            dealing.sealed[recipient - 1], ad, _AEAD_NONCE, key
        )
        share = decode_scalar(plain, "share", nonzero=True)
    except (CryptoError, FairnessError):
        return None
    if encode_point(base_mul(share)) != encode_point(
        commitment_eval(dealing.commitments, recipient)
    ):
        return None
    return share


def open_own_share(config: DkgConfig, dealing: Dealing, me: int, secret: int) -> int | None:
    """Member `me`'s share from `dealing` (its DKG secret `secret`), None if it does not
    open or does not match the dealer's commitments (then `me` complains)."""
    return _open_share(config, dealing, me, mul(dealing.ephemeral, secret))


def transcript_of(config: DkgConfig, public: ThresholdPublicKey, qualified: list[Dealing]) -> bytes:
    """The digest of a finished run: the key and each qualified dealer's commitments, in
    dealer order. A replica keeps it in the key record, so whoever holds the record can
    tell the run's qualified dealings from any others (share recovery, keying.py)."""
    return hash_bytes(
        _TRANSCRIPT,
        config.session,
        public.encode(),
        *(u16(d.dealer) + d.commitments_digest(config.session) for d in qualified),
    )


def _complaint_context(config: DkgConfig, dealer: int, complainer: int) -> bytes:
    return hash_bytes(_COMPLAINT, config.session, u16(dealer), u16(complainer))


def make_complaint(config: DkgConfig, complainer: int, secret: int, dealing: Dealing) -> bytes:
    """Complainer's complaint against `dealing`: K = y·E and its DLEQ proof."""
    shared = mul(dealing.ephemeral, secret)
    proof = prove_dleq(
        secret, dealing.ephemeral, _complaint_context(config, dealing.dealer, complainer)
    )
    return (
        bytes([COMPLAINT, VERSION])
        + config.session
        + u16(complainer)
        + u16(dealing.dealer)
        + encode_point(shared)
        + proof
    )


# ---------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send `data` to every member over the agreed channel (the sender gets it back)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """`member` sent something malformed or dishonest; `code` says what."""

    member: int
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that is not a fault but has no effect (duplicate, late, out of order)."""

    member: int
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Disqualified:
    """Dealer `dealer` is out of QUAL, for `code`."""

    dealer: int
    code: str


@dataclass(frozen=True, slots=True)
class DkgResult:
    """The outcome every honest member agrees on, plus this member's own secret share
    (None if a dealer in QUAL never gave this member a valid share, which an honest
    member's complaint prevents when the channel delivers it)."""

    public: ThresholdPublicKey
    qualified: tuple[int, ...]
    transcript: bytes
    share: KeyShare | None


@dataclass(frozen=True, slots=True)
class Completed:
    result: DkgResult


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    detail: str


Action = Broadcast | Misbehaviour | Ignored | Disqualified | Completed | Failed


class Phase(enum.Enum):
    DEALING = "dealing"  # dealings and complaints are accepted
    COMPLAINTS = "complaints"  # dealings are late; complaints still accepted
    DONE = "done"
    FAILED = "failed"


# ---------------------------------------------------------------------------------------
# The state machine


class Dkg:
    """One member's view of one DKG run. Feed it the channel's messages in order
    (`receive`), then the two deadlines (`close_dealings`, `finish`); carry out the
    actions it returns. State is O(n²) at most: one dealing per dealer, one complaint
    per (complainer, dealer)."""

    def __init__(self, config: DkgConfig, me: int | None, secret: int | None) -> None:
        """`me` and `secret` None: an observer (node/fairness/keying.py), which judges
        every public message as a member does and reaches the same QUAL and key, but
        opens no share and never complains itself."""
        if (me is None) != (secret is None):
            raise FairnessError("bad_config", "a member has both an index and a secret")
        if me is not None and not 1 <= me <= config.members:
            raise FairnessError("bad_config", f"member {me} is not in 1 … {config.members}")
        if me is not None and (
            secret is None
            or not 0 < secret < N
            or member_public_key(secret) != config.member_keys[me - 1]
        ):
            raise FairnessError("bad_config", f"the secret is not member {me}'s DKG key")
        self.config = config
        self.me = me
        self._secret = secret
        self.phase = Phase.DEALING
        self._started = False
        self._dealings: dict[int, Dealing] = {}
        self._disqualified: dict[int, str] = {}
        self._complaints: set[tuple[int, int]] = set()
        self._my_shares: dict[int, int] = {}

    @property
    def disqualified(self) -> dict[int, str]:
        return dict(self._disqualified)

    def dealing(self, dealer: int) -> Dealing | None:
        """Dealer `dealer`'s accepted dealing (None: none, or it was disqualified)."""
        return None if dealer in self._disqualified else self._dealings.get(dealer)

    def state_size(self) -> tuple[int, int, int]:
        """Counts that change whenever a message changes the state (and only then): a
        log of the messages that changed them replays to the same state."""
        return len(self._dealings), len(self._disqualified), len(self._complaints)

    def start(self, seed: bytes) -> list[Action]:
        """Deal: 32 fresh random bytes in, this member's dealing out (once)."""
        if self._started or self.phase is not Phase.DEALING or self.me is None:
            return []
        self._started = True
        return [Broadcast(make_dealing(self.config, self.me, seed))]

    def receive(self, sender: int, data: bytes) -> list[Action]:
        """A message the channel delivered from member `sender` (authenticated by it)."""
        if not 1 <= sender <= self.config.members:
            raise FairnessError("bad_index", f"sender {sender} is not a member")
        if self.phase in (Phase.DONE, Phase.FAILED):
            return [Ignored(sender, "finished", "the DKG run is over")]
        if not data:
            return [Misbehaviour(sender, "bad_size", "empty message")]
        try:
            message = decode_message(self.config, data)
            if isinstance(message, Dealing):
                return self._on_dealing(sender, message)
            return self._on_complaint(sender, message)
        except FairnessError as error:
            return [Misbehaviour(sender, error.code, error.message)]

    def _on_dealing(self, sender: int, dealing: Dealing) -> list[Action]:
        if dealing.dealer != sender:
            return [
                Misbehaviour(sender, "not_sender", f"dealing signed as dealer {dealing.dealer}")
            ]
        if self.phase is not Phase.DEALING:
            return [Ignored(sender, "late", "dealing after the dealing deadline")]
        if sender in self._disqualified:
            return [Ignored(sender, "disqualified", "dealer already disqualified")]
        known = self._dealings.get(sender)
        if known is not None:
            if known.raw == dealing.raw:
                return [Ignored(sender, "duplicate", "dealing already received")]
            return self._disqualify(sender, "equivocation", "two different dealings")
        self._dealings[sender] = dealing
        if self.me is None or self._secret is None:
            return []
        share = open_own_share(self.config, dealing, self.me, self._secret)
        if share is None:
            return [Broadcast(make_complaint(self.config, self.me, self._secret, dealing))]
        self._my_shares[sender] = share
        return []

    def _on_complaint(self, sender: int, complaint: Complaint) -> list[Action]:
        if complaint.complainer != sender:
            return [
                Misbehaviour(sender, "not_sender", f"complaint signed as {complaint.complainer}")
            ]
        dealer = complaint.dealer
        if dealer in self._disqualified:
            return [Ignored(sender, "disqualified", "dealer already disqualified")]
        dealing = self._dealings.get(dealer)
        if dealing is None:
            return [Ignored(sender, "unknown_dealing", f"no dealing from {dealer} to judge")]
        if (sender, dealer) in self._complaints:
            return [Ignored(sender, "duplicate", "complaint already judged")]
        self._complaints.add((sender, dealer))
        context = _complaint_context(self.config, dealer, sender)
        y = self.config.member_point(sender)
        if not verify_dleq(dealing.ephemeral, y, complaint.shared, complaint.proof, context):
            return [Misbehaviour(sender, "bad_complaint_proof", "revealed key fails its proof")]
        if _open_share(self.config, dealing, sender, complaint.shared) is not None:
            return [Misbehaviour(sender, "false_complaint", f"dealer {dealer}'s share is valid")]
        return self._disqualify(dealer, "bad_share", f"share for member {sender} is invalid")

    def _disqualify(self, dealer: int, code: str, detail: str) -> list[Action]:
        self._disqualified[dealer] = code
        self._my_shares.pop(dealer, None)
        return [Misbehaviour(dealer, code, detail), Disqualified(dealer, code)]

    def close_dealings(self) -> list[Action]:
        """The dealing deadline has passed (a committed height, in phase 2)."""
        if self.phase is Phase.DEALING:
            self.phase = Phase.COMPLAINTS
        return []

    def finish(self) -> list[Action]:
        """The complaint deadline has passed: compute QUAL, the key and this share."""
        if self.phase in (Phase.DONE, Phase.FAILED):
            return []
        self.phase = Phase.COMPLAINTS
        t, n = self.config.threshold, self.config.members
        qualified = tuple(sorted(i for i in self._dealings if i not in self._disqualified))
        if len(qualified) < t:
            self.phase = Phase.FAILED
            return [Failed("too_few_qualified", f"{len(qualified)} qualified dealers, {t} needed")]
        aggregate = tuple(
            add(self._dealings[i].commitments[k] for i in qualified) for k in range(t)
        )
        public = ThresholdPublicKey.from_commitments(t, aggregate, n)
        transcript = transcript_of(self.config, public, [self._dealings[i] for i in qualified])
        share = None
        if self.me is not None and all(i in self._my_shares for i in qualified):
            secret = sum(self._my_shares[i] for i in qualified) % N
            if secret:
                share = KeyShare(self.me, secret)
                assert encode_point(base_mul(secret)) == public.verification_shares[self.me - 1]
        self.phase = Phase.DONE
        return [Completed(DkgResult(public, qualified, transcript, share))]
