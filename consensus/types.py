"""Consensus data types, their canonical msgpack encoding and their signing bytes.

Every type is a frozen, slotted dataclass with `to_wire()` (a msgpack-ready list, fields
in declaration order) and `from_wire()` (strict structural validation, raising
`errors.Malformed`). A top-level message travels as `[tag, *fields]`; see
docs/CONSENSUS.md for the byte layout and a test vector.

Signing bytes are a msgpack array whose first element is a domain string
("seqnet/consensus/v1/<kind>") and whose second is the committee's chain id, so a
signature for one kind of message can never pass for another, nor on another chain.

Nothing here checks signatures or rounds against each other: that is `verifier.py`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgpack

from consensus.crypto import SIGNATURE_LEN, sha256
from consensus.errors import Malformed

ID_LEN = 32
ZERO_ID = bytes(ID_LEN)
U64_MAX = 2**64 - 1

# Limits on what a peer may make us decode. The transport bounds the frame size too.
MAX_PAYLOAD_ENTRIES = 100_000
MAX_ENTRY_BYTES = 64 * 1024
MAX_SIGNERS = 256
MAX_RESPONSE_BLOCKS = 256

DOMAIN_BLOCK_ID = "seqnet/consensus/v1/block-id"
DOMAIN_PAYLOAD = "seqnet/consensus/v1/payload"
DOMAIN_BLOCK = "seqnet/consensus/v1/block"
DOMAIN_VOTE = "seqnet/consensus/v1/vote"
DOMAIN_TIMEOUT = "seqnet/consensus/v1/timeout"


def pack(obj: Any) -> bytes:
    data: bytes = _pack(obj)
    return data


# One packer for every `pack` (`msgpack.packb` builds a new one per call, a noticeable
# share of a block id when a sync checks thousands of blocks). Its `pack` runs in C from
# start to end without Python callbacks (plain lists, ints, bytes and str), so it holds
# the GIL throughout: a call from another thread cannot interleave with it.
_pack = msgpack.Packer(use_bin_type=True).pack


# ---------------------------------------------------------------- field validation


def _list(obj: Any, length: int | None = None, what: str = "list") -> list[Any]:
    if not isinstance(obj, list) or (length is not None and len(obj) != length):
        raise Malformed(f"{what}: expected a list of {length} items")
    return obj


def _uint(obj: Any, what: str) -> int:
    if type(obj) is not int or not 0 <= obj <= U64_MAX:
        raise Malformed(f"{what}: expected an unsigned 64-bit integer")
    return obj


def _bytes(obj: Any, what: str, length: int | None = None, max_len: int | None = None) -> bytes:
    if type(obj) is not bytes:
        raise Malformed(f"{what}: expected bytes")
    if length is not None and len(obj) != length:
        raise Malformed(f"{what}: expected {length} bytes")
    if max_len is not None and len(obj) > max_len:
        raise Malformed(f"{what}: longer than {max_len} bytes")
    return obj


def _payload(obj: Any) -> tuple[bytes, ...]:
    # The hot path of a full block: checks run in C (map/set/max), not per entry in Python.
    entries = tuple(_list(obj, what="payload"))
    if len(entries) > MAX_PAYLOAD_ENTRIES:
        raise Malformed(f"payload: more than {MAX_PAYLOAD_ENTRIES} entries")
    if entries and (set(map(type, entries)) != {bytes} or max(map(len, entries)) > MAX_ENTRY_BYTES):
        raise Malformed(f"payload entries must be bytes of at most {MAX_ENTRY_BYTES}")
    return entries


# Checks of a whole list run in C (map/set/min/max): these decode every QC a sync brings.


def _uints(obj: Any, what: str, max_len: int) -> tuple[int, ...]:
    items = _list(obj, what=what)
    if len(items) > max_len:
        raise Malformed(f"{what}: more than {max_len} items")
    if items and (set(map(type, items)) != {int} or min(items) < 0 or max(items) > U64_MAX):
        raise Malformed(f"{what}: expected unsigned 64-bit integers")
    return tuple(items)


def _sigs(obj: Any, what: str) -> tuple[bytes, ...]:
    items = _list(obj, what=what)
    if len(items) > MAX_SIGNERS:
        raise Malformed(f"{what}: more than {MAX_SIGNERS} signatures")
    if items and (set(map(type, items)) != {bytes} or set(map(len, items)) != {SIGNATURE_LEN}):
        raise Malformed(f"{what}: expected signatures of {SIGNATURE_LEN} bytes")
    return tuple(items)


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class VoteData:
    """What a vote certifies: a block and its parent (so a QC alone shows a 2-chain)."""

    block_id: bytes
    round: int
    parent_id: bytes
    parent_round: int

    def to_wire(self) -> list[Any]:
        return [self.block_id, self.round, self.parent_id, self.parent_round]

    @classmethod
    def from_wire(cls, obj: Any) -> VoteData:
        b, r, p, pr = _list(obj, 4, "vote data")
        return cls(
            _bytes(b, "block_id", ID_LEN),
            _uint(r, "round"),
            _bytes(p, "parent_id", ID_LEN),
            _uint(pr, "parent_round"),
        )

    def signing_bytes(self, chain_id: bytes) -> bytes:
        return pack([DOMAIN_VOTE, chain_id, *self.to_wire()])


@dataclass(frozen=True, slots=True)
class QuorumCert:
    """2f+1 votes on one VoteData. `signers` ascending, `signatures` in the same order.
    The genesis QC is the only one without signatures."""

    vote_data: VoteData
    signers: tuple[int, ...]
    signatures: tuple[bytes, ...]

    @property
    def block_id(self) -> bytes:
        return self.vote_data.block_id

    @property
    def round(self) -> int:
        return self.vote_data.round

    @property
    def parent_id(self) -> bytes:
        return self.vote_data.parent_id

    @property
    def parent_round(self) -> int:
        return self.vote_data.parent_round

    def certifies_two_chain(self) -> bool:
        """The 2-chain commit rule: the certified block's parent is committed when the
        certified block sits in the round right after its parent."""
        return self.round == self.parent_round + 1

    def to_wire(self) -> list[Any]:
        return [self.vote_data.to_wire(), list(self.signers), list(self.signatures)]

    @classmethod
    def from_wire(cls, obj: Any) -> QuorumCert:
        vd, signers, sigs = _list(obj, 3, "qc")
        return cls(
            VoteData.from_wire(vd),
            _uints(signers, "qc signers", MAX_SIGNERS),
            _sigs(sigs, "qc signatures"),
        )


@dataclass(frozen=True, slots=True)
class TimeoutCert:
    """2f+1 timeouts for one round. Each signer signed (round, its high QC round); the TC
    carries the highest of those QCs so that a receiver can sync to it."""

    round: int
    high_qc: QuorumCert
    signers: tuple[int, ...]
    hqc_rounds: tuple[int, ...]
    signatures: tuple[bytes, ...]

    def to_wire(self) -> list[Any]:
        return [
            self.round,
            self.high_qc.to_wire(),
            list(self.signers),
            list(self.hqc_rounds),
            list(self.signatures),
        ]

    @classmethod
    def from_wire(cls, obj: Any) -> TimeoutCert:
        r, qc, signers, rounds, sigs = _list(obj, 5, "tc")
        return cls(
            _uint(r, "tc round"),
            QuorumCert.from_wire(qc),
            _uints(signers, "tc signers", MAX_SIGNERS),
            _uints(rounds, "tc hqc rounds", MAX_SIGNERS),
            _sigs(sigs, "tc signatures"),
        )


def timeout_signing_bytes(chain_id: bytes, round_: int, hqc_round: int) -> bytes:
    return pack([DOMAIN_TIMEOUT, chain_id, round_, hqc_round])


# ---------------------------------------------------------------- blocks


def payload_digest(payload: tuple[bytes, ...]) -> bytes:
    if not payload:
        return _EMPTY_PAYLOAD_DIGEST
    return sha256(pack([DOMAIN_PAYLOAD, list(payload)]))


_EMPTY_PAYLOAD_DIGEST = sha256(pack([DOMAIN_PAYLOAD, []]))


def compute_block_id(
    round_: int,
    height: int,
    timestamp_ms: int,
    author: int,
    qc: QuorumCert,
    payload: tuple[bytes, ...],
) -> bytes:
    """The id commits to the header, the parent's QC data and signers, and the payload;
    not to the signature bytes nor to the proposer's signature. Who signed the QC is part
    of the agreed history (leader reputation counts those votes as participation: two
    honest nodes must not hold one block id with two voter sets); the bytes are not."""
    vd = qc.vote_data  # `VoteData.to_wire`, inline: a sync computes thousands of ids
    vote = [vd.block_id, vd.round, vd.parent_id, vd.parent_round]
    header = [DOMAIN_BLOCK_ID, round_, height, timestamp_ms, author, vote]
    return sha256(_pack([*header, list(qc.signers), payload_digest(payload)]))


def block_signing_bytes(chain_id: bytes, block_id: bytes) -> bytes:
    return pack([DOMAIN_BLOCK, chain_id, block_id])


@dataclass(frozen=True, slots=True)
class Block:
    round: int
    height: int
    timestamp_ms: int
    author: int
    qc: QuorumCert  # certifies the parent
    payload: tuple[bytes, ...]  # opaque, ordered entries chosen by the proposer's node
    signature: bytes  # the author's signature over block_signing_bytes(id)
    id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        block_id = compute_block_id(
            self.round, self.height, self.timestamp_ms, self.author, self.qc, self.payload
        )
        object.__setattr__(self, "id", block_id)

    @property
    def parent_id(self) -> bytes:
        return self.qc.block_id

    def with_signature(self, signature: bytes) -> Block:
        """This block, signed. The id does not cover the signature, so it is copied, not
        recomputed: hashing a full payload again would cost as much as a verification."""
        signed = copy.copy(self)
        object.__setattr__(signed, "signature", signature)
        return signed

    def vote_data(self) -> VoteData:
        return VoteData(self.id, self.round, self.qc.block_id, self.qc.round)

    def to_wire(self) -> list[Any]:
        return [
            self.round,
            self.height,
            self.timestamp_ms,
            self.author,
            self.qc.to_wire(),
            list(self.payload),
            self.signature,
        ]

    @classmethod
    def from_wire(cls, obj: Any) -> Block:
        r, h, ts, author, qc, payload, sig = _list(obj, 7, "block")
        return cls(
            _uint(r, "block round"),
            _uint(h, "block height"),
            _uint(ts, "block timestamp_ms"),
            _uint(author, "block author"),
            QuorumCert.from_wire(qc),
            _payload(payload),
            _bytes(sig, "block signature", max_len=SIGNATURE_LEN),
        )


def genesis_block(chain_id: bytes) -> Block:
    """Round 0, height 0, committed by definition. Its payload is the chain id, so every
    chain has its own genesis id and no block of one chain can link into another."""
    vd = VoteData(ZERO_ID, 0, ZERO_ID, 0)
    return Block(0, 0, 0, 0, QuorumCert(vd, (), ()), (chain_id,), b"")


def genesis_qc(genesis: Block) -> QuorumCert:
    """The QC every chain starts from: round 0, certifying genesis, no signatures."""
    return QuorumCert(genesis.vote_data(), (), ())


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Proposal:
    """The leader's block; `tc` is the TC for round - 1 when the block does not extend a
    QC of round - 1 (the leader entered its round by a timeout)."""

    block: Block
    tc: TimeoutCert | None

    def to_wire(self) -> list[Any]:
        return [self.block.to_wire(), None if self.tc is None else self.tc.to_wire()]

    @classmethod
    def from_wire(cls, obj: Any) -> Proposal:
        b, tc = _list(obj, 2, "proposal")
        return cls(Block.from_wire(b), None if tc is None else TimeoutCert.from_wire(tc))


@dataclass(frozen=True, slots=True)
class Vote:
    vote_data: VoteData
    author: int
    signature: bytes

    @property
    def round(self) -> int:
        return self.vote_data.round

    def to_wire(self) -> list[Any]:
        return [self.vote_data.to_wire(), self.author, self.signature]

    @classmethod
    def from_wire(cls, obj: Any) -> Vote:
        vd, author, sig = _list(obj, 3, "vote")
        return cls(
            VoteData.from_wire(vd),
            _uint(author, "vote author"),
            _bytes(sig, "vote signature", SIGNATURE_LEN),
        )


@dataclass(frozen=True, slots=True)
class TimeoutMsg:
    """A signed "round `round` timed out here; my highest QC is `high_qc`". `last_tc` is
    the sender's highest TC, unsigned baggage that lets a lagging receiver catch up."""

    round: int
    high_qc: QuorumCert
    author: int
    signature: bytes  # over timeout_signing_bytes(round, high_qc.round)
    last_tc: TimeoutCert | None

    def to_wire(self) -> list[Any]:
        tc = None if self.last_tc is None else self.last_tc.to_wire()
        return [self.round, self.high_qc.to_wire(), self.author, self.signature, tc]

    @classmethod
    def from_wire(cls, obj: Any) -> TimeoutMsg:
        r, qc, author, sig, tc = _list(obj, 5, "timeout")
        return cls(
            _uint(r, "timeout round"),
            QuorumCert.from_wire(qc),
            _uint(author, "timeout author"),
            _bytes(sig, "timeout signature", SIGNATURE_LEN),
            None if tc is None else TimeoutCert.from_wire(tc),
        )


@dataclass(frozen=True, slots=True)
class SyncInfo:
    """Sent to a peer seen in a lower round: our highest QC and TC."""

    high_qc: QuorumCert
    high_tc: TimeoutCert | None

    def to_wire(self) -> list[Any]:
        tc = None if self.high_tc is None else self.high_tc.to_wire()
        return [self.high_qc.to_wire(), tc]

    @classmethod
    def from_wire(cls, obj: Any) -> SyncInfo:
        qc, tc = _list(obj, 2, "sync info")
        return cls(QuorumCert.from_wire(qc), None if tc is None else TimeoutCert.from_wire(tc))


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Ask for `block_id` and up to count - 1 of its ancestors."""

    block_id: bytes
    count: int

    def to_wire(self) -> list[Any]:
        return [self.block_id, self.count]

    @classmethod
    def from_wire(cls, obj: Any) -> BlockRequest:
        b, count = _list(obj, 2, "block request")
        count = _uint(count, "block request count")
        if not 1 <= count <= MAX_RESPONSE_BLOCKS:
            raise Malformed(f"block request count must be in 1..{MAX_RESPONSE_BLOCKS}")
        return cls(_bytes(b, "block request id", ID_LEN), count)


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """Blocks newest first: blocks[0] is the requested one, each next one its parent."""

    blocks: tuple[Block, ...]

    def to_wire(self) -> list[Any]:
        return [[b.to_wire() for b in self.blocks]]

    @classmethod
    def from_wire(cls, obj: Any) -> BlockResponse:
        (items,) = _list(obj, 1, "block response")
        blocks = _list(items, what="block response blocks")
        if not 1 <= len(blocks) <= MAX_RESPONSE_BLOCKS:
            raise Malformed(f"block response must hold 1..{MAX_RESPONSE_BLOCKS} blocks")
        return cls(tuple(Block.from_wire(b) for b in blocks))


Message: TypeAlias = Proposal | Vote | TimeoutMsg | SyncInfo | BlockRequest | BlockResponse

_TAGS: dict[type[Any], int] = {
    Proposal: 1,
    Vote: 2,
    TimeoutMsg: 3,
    SyncInfo: 4,
    BlockRequest: 5,
    BlockResponse: 6,
}
_BY_TAG: dict[int, Any] = {tag: cls for cls, tag in _TAGS.items()}


def encode_message(msg: Message) -> bytes:
    return pack([_TAGS[type(msg)], *msg.to_wire()])


def decode_message(data: bytes) -> Message:
    """Bytes from a peer -> an *unverified* message, or `Malformed`."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise Malformed(f"not msgpack: {exc}") from None
    if not isinstance(obj, list) or not obj:
        raise Malformed("a message is a non-empty msgpack array")
    cls = _BY_TAG.get(obj[0]) if type(obj[0]) is int else None
    if cls is None:
        raise Malformed(f"unknown message tag {obj[0]!r}")
    msg: Message = cls.from_wire(obj[1:])
    return msg
