"""The peer boundary: one typed, bounded decoder for every message a member receives.

Everything a peer sends passes `decode_peer_message` before the runtime looks at it:
the kind, the arity, every integer's range (heights, offsets, counts) and every size in
bytes are checked here, once, and the runtime gets a frozen dataclass whose fields it may
use as they are (a height fits SQLite's signed 64-bit integer, a chunk is at most 1 MiB).
A violation raises `PeerProtocolError`: the runtime drops the message and counts it
against that peer (node/runtime.py, `_dispatcher`). Consensus message bytes are decoded
and verified by consensus/ (`Verifier.decode`), which has its own typed decoder;
checkpoint signatures by node/chain/checkpointer.py (`parse_signature_message`).

The wire forms are docs/PROTOCOL.md §9.2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from node.listing import MAX_LISTING_BYTES, BadListing, Listing, decode_listing
from node.oracle.observation import (
    MAX_OBSERVATION_BYTES,
    BadObservation,
    Observation,
    decode_observation,
)

# Heights, offsets and sizes stay below 2**62: far beyond any real value, and every sum
# of two of them still fits SQLite's INTEGER and msgpack's int64.
MAX_HEIGHT: Final = (1 << 62) - 1
MAX_SYNC_BLOCKS: Final = 1024  # records per "sr" request
MAX_SYNC_REPLY_BYTES: Final = 3 << 20  # records in one "sp" reply (we send <= 2 MiB)
MAX_COMMITTED_RECORD_BYTES: Final = 3 << 20  # one block with its signer list
MAX_SNAPSHOT_CHUNK_BYTES: Final = 1 << 20
MAX_SNAPSHOT_BYTES: Final = 1 << 30
MAX_FORWARD_INTENTS: Final = 512  # intents in one "i" message
MAX_FORWARD_INTENT_BYTES: Final = 1024  # one packed intent (node/intents.py's limit)
MAX_QC_WIRE_ITEMS: Final = 3
DIGEST_BYTES: Final = 32
MAX_FORWARD_ENVELOPES: Final = 512  # envelopes in one "e" message
MAX_ENVELOPE_BYTES: Final = 1527  # node/fairness/envelope.py MAX_ENVELOPE_BYTES (a test checks)
MAX_SHARE_ITEMS: Final = 16_384  # (entry, share) pairs in one "ds" message, ~1.7 MB
MAX_ENTRY_INDEX: Final = 100_000  # genesis's max_block_entries bound
SHARE_BYTES: Final = 99  # node/fairness/threshold.py SHARE_BYTES
# Share recovery ("kq"/"kd"): the qualified dealings of one DKG run. A dealing is exactly
# 73 + 33·t + 48·n bytes for its committee (node/fairness/dkg.py checks that); these
# bounds are the largest committee a key may have (128 members, t = 43): ~7.6 KB each,
# ~1 MB for all, within the transport's 4 MiB frame.
MAX_DEALINGS: Final = 128  # node/fairness/threshold.py MAX_MEMBERS
MAX_DEALING_BYTES: Final = 73 + 33 * 43 + 48 * 128
MAX_EPOCH: Final = MAX_HEIGHT
# DKG relay ("dr", PROTOCOL.md §10.9): a member's pending DKG entries (a dealing and its
# complaints) in relayed form, tag 0x09 ‖ sender ‖ 64-byte proof ‖ message.
MAX_RELAYED_DKG: Final = 8  # node/runtime/member.py MAX_DKG_ENTRIES
MAX_RELAYED_DKG_BYTES: Final = 1 + 2 + 64 + MAX_DEALING_BYTES
# Share repair ("kr"/"kp"/"ks"/"kf", PROTOCOL.md §10.11): at most t = 43 helpers (the
# largest committee's threshold), members 1 … 128, a 16-byte session id, 33-byte piece
# commitments, 64-byte Ed25519 signatures, 32-byte scalars. The largest "ks" carries 43
# vectors of 43 commitments: ~64 KB.
MAX_REPAIR_HELPERS: Final = 43  # node/fairness/repair.py MAX_HELPERS (a test checks)
MAX_MEMBER: Final = 128  # node/fairness/threshold.py MAX_MEMBERS
REPAIR_SID_BYTES: Final = 16
POINT_BYTES: Final = 33
SCALAR_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64


class PeerProtocolError(ValueError):
    """A peer's message broke the wire format: drop it, count it against the peer."""


@dataclass(frozen=True, slots=True)
class ConsensusBytes:
    data: bytes  # decoded and verified by consensus.Verifier


@dataclass(frozen=True, slots=True)
class ForwardedIntents:
    packed: tuple[bytes, ...]  # packed signed intents (node/intents.py unpack_intent)


@dataclass(frozen=True, slots=True)
class OracleObservation:
    observation: Observation  # well formed; its signature is checked by the runtime


@dataclass(frozen=True, slots=True)
class ForwardedListing:
    listing: Listing  # well formed; its signatures are checked by the runtime


@dataclass(frozen=True, slots=True)
class CheckpointSignature:
    message: list[Any]  # parsed by node/chain/checkpointer.py (parse_signature_message)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    from_height: int
    limit: int


@dataclass(frozen=True, slots=True)
class SyncReply:
    from_height: int
    records: tuple[bytes, ...]  # committed records, decoded by node/payload.py
    proof: list[Any] | None  # QC wire form, decoded and verified by consensus/
    root_height: int


@dataclass(frozen=True, slots=True)
class SnapshotInfoRequest:
    pass


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    height: int  # 0: the peer has no snapshot
    digest: bytes
    block_id: bytes


@dataclass(frozen=True, slots=True)
class SnapshotChunkRequest:
    height: int
    offset: int


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    height: int
    offset: int
    chunk: bytes
    total: int
    record: bytes


@dataclass(frozen=True, slots=True)
class ForwardedEnvelopes:
    envelopes: tuple[bytes, ...]  # encrypted intents (node/fairness/envelope.py decodes)


@dataclass(frozen=True, slots=True)
class DecryptionShares:
    height: int
    shares: tuple[tuple[int, bytes], ...]  # (entry index, 99-byte share): proofs unchecked


@dataclass(frozen=True, slots=True)
class SharesRequest:
    height: int


@dataclass(frozen=True, slots=True)
class DealingsRequest:
    epoch: int  # the key whose qualified dealings we lack (share recovery)


@dataclass(frozen=True, slots=True)
class Dealings:
    epoch: int
    dealings: tuple[bytes, ...]  # claimed qualified dealings: judged by keying.recover_share


@dataclass(frozen=True, slots=True)
class RelayedDkg:
    """The sender's pending DKG entries (tag 0x09, proofs unchecked) for our proposals."""

    entries: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """Member `requester` (the sender) asks us to help repair its share of `epoch`'s key."""

    epoch: int
    sid: bytes
    helpers: tuple[int, ...]  # 1-based members, in the requester's order


@dataclass(frozen=True, slots=True)
class RepairPiece:
    """A helper (the sender) gives us our piece of its split for `requester`'s repair."""

    epoch: int
    requester: int
    sid: bytes
    commitments: tuple[bytes, ...]  # the sender's signed vector: checked by repair.py
    signature: bytes
    piece: bytes


@dataclass(frozen=True, slots=True)
class RepairSum:
    """A helper (the sender) gives the requester its sum σ and the vectors it used."""

    epoch: int
    sid: bytes
    sigma: bytes
    vectors: tuple[tuple[tuple[bytes, ...], bytes], ...]  # (commitments, signature)


@dataclass(frozen=True, slots=True)
class RepairFault:
    """A helper (the sender) tells the requester that helper `accused` sent it a piece
    that failed its checks: a hint only (it is not proof), the session cannot finish."""

    epoch: int
    sid: bytes
    accused: int


PeerMessage = (
    ConsensusBytes
    | ForwardedIntents
    | OracleObservation
    | ForwardedListing
    | CheckpointSignature
    | SyncRequest
    | SyncReply
    | SnapshotInfoRequest
    | SnapshotInfo
    | SnapshotChunkRequest
    | SnapshotChunk
    | ForwardedEnvelopes
    | DecryptionShares
    | SharesRequest
    | DealingsRequest
    | Dealings
    | RelayedDkg
    | RepairRequest
    | RepairPiece
    | RepairSum
    | RepairFault
)

# Replies that only a running sync or snapshot sync reads.
SYNC_REPLIES = (SyncReply, SnapshotInfo, SnapshotChunk)


def decode_peer_message(message: Any) -> PeerMessage:
    """A message as msgpack decoded it -> its typed form, or `PeerProtocolError`."""
    if not isinstance(message, list) or not message or type(message[0]) is not str:
        raise PeerProtocolError("a peer message is a non-empty array starting with its kind")
    kind = message[0]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise PeerProtocolError(f"unknown message kind {kind[:16]!r}")
    arity = _ARITY[kind]
    if len(message) != arity:
        raise PeerProtocolError(f"{kind!r} has {arity - 1} fields, got {len(message) - 1}")
    return decoder(message)


def _int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise PeerProtocolError(f"{what} must be an integer in {low}..{high}")
    return value


def _bytes(value: Any, what: str, max_bytes: int, exact: int | None = None) -> bytes:
    if type(value) is not bytes or len(value) > max_bytes:
        raise PeerProtocolError(f"{what} must be at most {max_bytes} bytes")
    if exact is not None and len(value) != exact:
        raise PeerProtocolError(f"{what} must be {exact} bytes")
    return value


def _byte_list(value: Any, what: str, max_items: int, max_item_bytes: int) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > max_items:
        raise PeerProtocolError(f"{what} must be a list of at most {max_items} items")
    for item in value:
        _bytes(item, what, max_item_bytes)
    return tuple(value)


def _consensus(m: list[Any]) -> ConsensusBytes:
    return ConsensusBytes(_bytes(m[1], "consensus message", 1 << 62))


def _intents(m: list[Any]) -> ForwardedIntents:
    items = _byte_list(m[1], "forwarded intents", MAX_FORWARD_INTENTS, MAX_FORWARD_INTENT_BYTES)
    return ForwardedIntents(items)


def _observation(m: list[Any]) -> OracleObservation:
    entry = _bytes(m[1], "oracle observation", MAX_OBSERVATION_BYTES)
    try:
        return OracleObservation(decode_observation(entry))
    except BadObservation as exc:
        raise PeerProtocolError(str(exc)) from None


def _checkpoint_signature(m: list[Any]) -> CheckpointSignature:
    return CheckpointSignature(m)


def _sync_request(m: list[Any]) -> SyncRequest:
    return SyncRequest(
        _int(m[1], "sync from_height", 1, MAX_HEIGHT),
        _int(m[2], "sync limit", 1, MAX_SYNC_BLOCKS),
    )


def _sync_reply(m: list[Any]) -> SyncReply:
    records = _byte_list(m[2], "sync records", MAX_SYNC_BLOCKS, MAX_COMMITTED_RECORD_BYTES)
    if sum(map(len, records)) > MAX_SYNC_REPLY_BYTES:
        raise PeerProtocolError(f"sync records exceed {MAX_SYNC_REPLY_BYTES} bytes")
    proof = m[3]
    if proof is not None and (not isinstance(proof, list) or len(proof) != MAX_QC_WIRE_ITEMS):
        raise PeerProtocolError("sync proof must be nil or a QC")
    return SyncReply(
        _int(m[1], "sync from_height", 1, MAX_HEIGHT),
        records,
        proof,
        _int(m[4], "sync root_height", 0, MAX_HEIGHT),
    )


def _snapshot_info_request(m: list[Any]) -> SnapshotInfoRequest:
    return SnapshotInfoRequest()


def _snapshot_info(m: list[Any]) -> SnapshotInfo:
    height = _int(m[1], "snapshot height", 0, MAX_HEIGHT)
    exact = 0 if height == 0 else DIGEST_BYTES
    return SnapshotInfo(
        height,
        _bytes(m[2], "snapshot digest", DIGEST_BYTES, exact),
        _bytes(m[3], "snapshot block id", DIGEST_BYTES, exact),
    )


def _snapshot_chunk_request(m: list[Any]) -> SnapshotChunkRequest:
    return SnapshotChunkRequest(
        _int(m[1], "snapshot height", 1, MAX_HEIGHT),
        _int(m[2], "snapshot offset", 0, MAX_SNAPSHOT_BYTES),
    )


def _snapshot_chunk(m: list[Any]) -> SnapshotChunk:
    chunk = SnapshotChunk(
        _int(m[1], "snapshot height", 1, MAX_HEIGHT),
        _int(m[2], "snapshot offset", 0, MAX_SNAPSHOT_BYTES),
        _bytes(m[3], "snapshot chunk", MAX_SNAPSHOT_CHUNK_BYTES),
        _int(m[4], "snapshot size", 1, MAX_SNAPSHOT_BYTES),
        _bytes(m[5], "snapshot record", MAX_COMMITTED_RECORD_BYTES),
    )
    if chunk.offset + len(chunk.chunk) > chunk.total:
        raise PeerProtocolError("snapshot chunk runs past the snapshot's size")
    return chunk


def _envelopes(m: list[Any]) -> ForwardedEnvelopes:
    items = _byte_list(m[1], "forwarded envelopes", MAX_FORWARD_ENVELOPES, MAX_ENVELOPE_BYTES)
    return ForwardedEnvelopes(items)


def _shares(m: list[Any]) -> DecryptionShares:
    items = m[2]
    if not isinstance(items, list) or len(items) > MAX_SHARE_ITEMS:
        raise PeerProtocolError(f"shares must be a list of at most {MAX_SHARE_ITEMS} items")
    shares = []
    for item in items:
        if not isinstance(item, list) or len(item) != 2:
            raise PeerProtocolError("a share item is [entry index, share]")
        shares.append(
            (
                _int(item[0], "share entry index", 0, MAX_ENTRY_INDEX),
                _bytes(item[1], "decryption share", SHARE_BYTES, SHARE_BYTES),
            )
        )
    return DecryptionShares(_int(m[1], "shares height", 1, MAX_HEIGHT), tuple(shares))


def _shares_request(m: list[Any]) -> SharesRequest:
    return SharesRequest(_int(m[1], "shares height", 1, MAX_HEIGHT))


def _listing(m: list[Any]) -> ForwardedListing:
    entry = _bytes(m[1], "listing", MAX_LISTING_BYTES)
    try:
        return ForwardedListing(decode_listing(entry))
    except BadListing as exc:
        raise PeerProtocolError(f"listing: {exc}") from None


def _dealings_request(m: list[Any]) -> DealingsRequest:
    return DealingsRequest(_int(m[1], "dealings epoch", 0, MAX_EPOCH))


def _dealings(m: list[Any]) -> Dealings:
    items = _byte_list(m[2], "dealings", MAX_DEALINGS, MAX_DEALING_BYTES)
    return Dealings(_int(m[1], "dealings epoch", 0, MAX_EPOCH), items)


def _relayed_dkg(m: list[Any]) -> RelayedDkg:
    items = _byte_list(m[1], "relayed DKG entries", MAX_RELAYED_DKG, MAX_RELAYED_DKG_BYTES)
    if any(e[:1] != b"\x09" or len(e) <= 67 for e in items):
        raise PeerProtocolError("a relayed DKG entry is 0x09 ‖ sender ‖ proof ‖ message")
    return RelayedDkg(items)


def _member(value: Any, what: str) -> int:
    return _int(value, what, 1, MAX_MEMBER)


def _commitments(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_REPAIR_HELPERS:
        raise PeerProtocolError(f"piece commitments must be 1 … {MAX_REPAIR_HELPERS} items")
    return tuple(_bytes(c, "piece commitment", POINT_BYTES, POINT_BYTES) for c in value)


def _sid(value: Any) -> bytes:
    return _bytes(value, "repair session id", REPAIR_SID_BYTES, REPAIR_SID_BYTES)


def _signature(value: Any) -> bytes:
    return _bytes(value, "repair signature", SIGNATURE_BYTES, SIGNATURE_BYTES)


def _repair_request(m: list[Any]) -> RepairRequest:
    helpers = m[3]
    if not isinstance(helpers, list) or not 1 <= len(helpers) <= MAX_REPAIR_HELPERS:
        raise PeerProtocolError(f"repair helpers must be 1 … {MAX_REPAIR_HELPERS} members")
    members = tuple(_member(h, "repair helper") for h in helpers)
    if len(set(members)) != len(members):
        raise PeerProtocolError("repair helpers must be distinct")
    return RepairRequest(_int(m[1], "repair epoch", 0, MAX_EPOCH), _sid(m[2]), members)


def _repair_piece(m: list[Any]) -> RepairPiece:
    return RepairPiece(
        _int(m[1], "repair epoch", 0, MAX_EPOCH),
        _member(m[2], "repair requester"),
        _sid(m[3]),
        _commitments(m[4]),
        _signature(m[5]),
        _bytes(m[6], "repair piece", SCALAR_BYTES, SCALAR_BYTES),
    )


def _repair_sum(m: list[Any]) -> RepairSum:
    items = m[4]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_REPAIR_HELPERS:
        raise PeerProtocolError(f"repair vectors must be 1 … {MAX_REPAIR_HELPERS} items")
    vectors = []
    for item in items:
        if not isinstance(item, list) or len(item) != 2:
            raise PeerProtocolError("a repair vector is [commitments, signature]")
        vectors.append((_commitments(item[0]), _signature(item[1])))
    return RepairSum(
        _int(m[1], "repair epoch", 0, MAX_EPOCH),
        _sid(m[2]),
        _bytes(m[3], "repair sum", SCALAR_BYTES, SCALAR_BYTES),
        tuple(vectors),
    )


def _repair_fault(m: list[Any]) -> RepairFault:
    return RepairFault(
        _int(m[1], "repair epoch", 0, MAX_EPOCH), _sid(m[2]), _member(m[3], "accused helper")
    )


_DECODERS: dict[str, Callable[[list[Any]], PeerMessage]] = {
    "c": _consensus,
    "i": _intents,
    "o": _observation,
    "l": _listing,
    "cps": _checkpoint_signature,
    "sr": _sync_request,
    "sp": _sync_reply,
    "ssr": _snapshot_info_request,
    "ssi": _snapshot_info,
    "ssg": _snapshot_chunk_request,
    "ssd": _snapshot_chunk,
    "e": _envelopes,
    "ds": _shares,
    "dq": _shares_request,
    "kq": _dealings_request,
    "kd": _dealings,
    "dr": _relayed_dkg,
    "kr": _repair_request,
    "kp": _repair_piece,
    "ks": _repair_sum,
    "kf": _repair_fault,
}
_ARITY = {
    "c": 2,
    "i": 2,
    "o": 2,
    "l": 2,
    "cps": 7,
    "sr": 3,
    "sp": 5,
    "ssr": 1,
    "ssi": 4,
    "ssg": 3,
    "ssd": 6,
    "e": 2,
    "ds": 3,
    "dq": 2,
    "kq": 2,
    "kd": 3,
    "dr": 2,
    "kr": 4,
    "kp": 7,
    "ks": 5,
    "kf": 4,
}
