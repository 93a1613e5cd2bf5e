"""What a block's payload entries and the committed log hold (docs/PROTOCOL.md §9).

The consensus core treats a payload as opaque bytes; the node gives each entry a one-byte
tag so that other kinds (deposits from the chain watcher) can join trader intents later
without a format change:

    0x01 ‖ msgpack(signed intent)            (PROTOCOL.md §4 wire form)
    0x02 ‖ msgpack(deposit record)           (PROTOCOL.md §7, from the chain watcher)
    0x03 ‖ signer_0 ‖ … ‖ signer_{k-1}       (the signers entry: last, 20 bytes each)
    0x05 ‖ envelope                          (an encrypted intent, PROTOCOL.md §10.3;
                                              its signer is the envelope's)
    0x07 ‖ DKG message                       (a dealing or complaint of the committee
                                              key's DKG, PROTOCOL.md §10.9; from the
                                              block's author, signer: 20 zero bytes)
    0x08 ‖ listing                           (an option series signed by the oracle
                                              quorum of members, node/listing.py;
                                              signer: 20 zero bytes)

A non-empty payload ends with its signers entry: the signer each entry recovers to (an
intent's key, or 20 zero bytes for a deposit), in payload order. Every replica recovers
every intent's signer before it votes (a cache keyed by the entry bytes makes that free
for intents it has already seen) and votes only if the signers entry says the same; so
the block id, and with it a QC, covers the signers. A member that replays its log, or
takes blocks from a peer by sync, reads the signers instead of recovering them: catch-up
costs one QC check per batch, not one recovery per entry (PROTOCOL.md §9.1).

The committed log stores each block's wire form, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgpack
import msgspec

from consensus.crypto import SIGNATURE_LEN
from consensus.types import (
    ID_LEN,
    MAX_ENTRY_BYTES,
    MAX_PAYLOAD_ENTRIES,
    MAX_SIGNERS,
    Block,
    QuorumCert,
    VoteData,
)
from node.intents import IntentError, SignedIntent, unpack_intent

TAG_INTENT = 0x01
TAG_DEPOSIT = 0x02
TAG_SIGNERS = 0x03
TAG_ENVELOPE = 0x05  # 0x04, 0x06: price, vol observations (node/oracle/observation.py)
TAG_DKG = 0x07  # node/fairness/keying.py
TAG_LISTING = 0x08  # node/listing.py
TAG_DKG_RELAYED = 0x09  # node/fairness/keying.py: a member's DKG message in another's block
SIGNER_BYTES = 20
NO_SIGNER = bytes(SIGNER_BYTES)  # the signer of an entry no trader signed (a deposit)
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
U256_BYTES = 32


class BadEntry(Exception):
    """A payload entry that no honest leader would propose."""


def intent_entry(packed_intent: bytes) -> bytes:
    return bytes((TAG_INTENT,)) + packed_intent


def envelope_entry(envelope: bytes) -> bytes:
    """0x05 ‖ the envelope's bytes (decoded by node/fairness/envelope.py)."""
    return bytes((TAG_ENVELOPE,)) + envelope


def dkg_entry(message: bytes) -> bytes:
    """0x07 ‖ a DKG message (node/fairness/dkg.py), sent by the block's author."""
    return bytes((TAG_DKG,)) + message


def dkg_relayed_entry(sender: int, proof: bytes, message: bytes) -> bytes:
    """0x09 ‖ sender (u16, 1-based member) ‖ its 64-byte proof ‖ a DKG message: carried in
    any member's block (PROTOCOL.md §10.9)."""
    assert 0 < sender < 1 << 16 and len(proof) == 64
    return bytes((TAG_DKG_RELAYED,)) + sender.to_bytes(2, "big") + proof + message


def decode_entry(entry: bytes) -> SignedIntent:
    if not entry or entry[0] != TAG_INTENT:
        raise BadEntry(f"unknown payload entry tag {entry[:1].hex() or 'empty'}")
    try:
        return unpack_intent(entry[1:])
    except IntentError as exc:
        raise BadEntry(f"{exc.code}: {exc.message}") from exc


def signers_entry(signers: list[bytes]) -> bytes:
    """0x03 ‖ the signers, 20 bytes each, in payload order."""
    return bytes((TAG_SIGNERS,)) + b"".join(signers)


def with_signers(entries: list[bytes], signers: list[bytes]) -> tuple[bytes, ...]:
    """A block payload: the entries, then their signers entry (none when empty)."""
    return (*entries, signers_entry(signers)) if entries else ()


def split_payload(payload: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], list[bytes]]:
    """(entries, signer of each) of a block payload; BadEntry unless the payload is
    empty or ends with a signers entry of exactly one signer per entry before it."""
    if not payload:
        return (), []
    check_signers(payload)
    last = payload[-1]
    signers = [last[i : i + SIGNER_BYTES] for i in range(1, len(last), SIGNER_BYTES)]
    return payload[:-1], signers


def check_signers(payload: tuple[bytes, ...]) -> None:
    """`split_payload`'s check without the split: BadEntry unless the payload is empty
    or ends with a signers entry of exactly one signer per entry before it."""
    if payload and (
        len(payload) < 2
        or payload[-1][:1] != _SIGNERS_TAG
        or len(payload[-1]) != 1 + SIGNER_BYTES * (len(payload) - 1)
    ):
        raise BadEntry("a payload must end with one signer per entry (tag 0x03)")


_SIGNERS_TAG = bytes((TAG_SIGNERS,))


def encode_committed(block: Block) -> bytes:
    """A committed-log record: the block's wire form (PROTOCOL.md §9.1)."""
    data: bytes = msgpack.packb(block.to_wire(), use_bin_type=True)
    return data


def decode_committed(data: bytes) -> Block:
    """The block of a committed-log record; its payload splits (`check_signers`).

    A peer's sync reply brings up to a thousand records, so the record is decoded by a
    typed msgspec decoder whose schema (`_BlockWire`) checks every type, length and
    range in C. It takes only records that `Block.from_wire` would take, and gives the
    same block (tests/node/test_payload.py compares them); anything it refuses goes
    through `Block.from_wire`, which gives the same result or the same error."""
    try:
        wire = _decode_block_wire(data)
    except msgspec.DecodeError:  # ValidationError too: the reference path says why
        block = Block.from_wire(msgpack.unpackb(data, raw=False))
    else:
        qc, vote = wire.qc, wire.qc.vote_data
        block = Block(
            wire.round,
            wire.height,
            wire.timestamp_ms,
            wire.author,
            QuorumCert(
                VoteData(vote.block_id, vote.round, vote.parent_id, vote.parent_round),
                qc.signers,
                qc.signatures,
            ),
            wire.payload,
            wire.signature,
        )
    check_signers(block.payload)
    return block


# The block wire form (consensus/types.py `Block.to_wire`) as msgspec types, with the
# limits `Block.from_wire` checks: exact array lengths, unsigned 64-bit integers (a
# msgpack integer is at most 2**64 - 1, and bool is not an int here), bytes only.
_U64 = Annotated[int, msgspec.Meta(ge=0)]
_Id = Annotated[bytes, msgspec.Meta(min_length=ID_LEN, max_length=ID_LEN)]
_QcSignature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_LEN, max_length=SIGNATURE_LEN)]
_Entry = Annotated[bytes, msgspec.Meta(max_length=MAX_ENTRY_BYTES)]


class _VoteDataWire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    block_id: _Id
    round: _U64
    parent_id: _Id
    parent_round: _U64


class _QcWire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    vote_data: _VoteDataWire
    signers: Annotated[tuple[_U64, ...], msgspec.Meta(max_length=MAX_SIGNERS)]
    signatures: Annotated[tuple[_QcSignature, ...], msgspec.Meta(max_length=MAX_SIGNERS)]


class _BlockWire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    round: _U64
    height: _U64
    timestamp_ms: _U64
    author: _U64
    qc: _QcWire
    payload: Annotated[tuple[_Entry, ...], msgspec.Meta(max_length=MAX_PAYLOAD_ENTRIES)]
    signature: Annotated[bytes, msgspec.Meta(max_length=SIGNATURE_LEN)]


_decode_block_wire = msgspec.msgpack.Decoder(_BlockWire).decode


def committed_contents(data: bytes) -> tuple[int, int, tuple[bytes, ...]]:
    """(height, timestamp_ms, payload) of a record from our own committed log, without
    building the block (no id, no QC): what the start-up replay needs, at a fraction of
    `decode_committed`'s cost. Only for records the storage has checksummed (the peer
    boundary decodes with `decode_committed`)."""
    wire = msgpack.unpackb(data, raw=False)
    _round, height, timestamp_ms, _author, _qc, payload, _sig = wire
    if type(height) is not int or type(timestamp_ms) is not int or type(payload) is not list:
        raise ValueError("committed-log record: not a block")
    return height, timestamp_ms, tuple(payload)


# ---------------------------------------------------------------------------------------
# Deposits (tag 0x02): what the chain watcher saw, as the leader proposes it


@dataclass(frozen=True, slots=True)
class DepositRecord:
    """One confirmed `Deposit` event of the settlement contract, mapped to the engine.

    `amount` is in token base units (what the event says); `asset` and `engine_amount`
    are its genesis asset id and `amount // unit`. A deposit that genesis cannot map (a
    token it does not list, an amount off the unit grid or above 64 bits: impossible with
    the contract, PROTOCOL.md §7) carries `asset = VOID_ASSET` and `engine_amount = 0`,
    so the engine consumes its id and credits nothing instead of stalling every later
    deposit."""

    deposit_id: int
    account: bytes
    token: bytes
    amount: int
    asset: int
    engine_amount: int

    def __post_init__(self) -> None:
        if not (
            type(self.deposit_id) is int
            and 1 <= self.deposit_id <= U64_MAX
            and _is_address(self.account)
            and _is_address(self.token)
            and type(self.amount) is int
            and 0 < self.amount < 1 << 256
            and type(self.asset) is int
            and 0 <= self.asset <= U32_MAX
            and type(self.engine_amount) is int
            and 0 <= self.engine_amount <= U64_MAX
        ):
            raise ValueError(f"malformed deposit record {self!r}")


VOID_ASSET = U32_MAX  # no genesis asset may use this id (node.chain.watcher checks)


def _is_address(value: object) -> bool:
    return type(value) is bytes and len(value) == 20


def deposit_entry(record: DepositRecord) -> bytes:
    """0x02 ‖ msgpack([deposit_id, account, token, amount as 32 bytes, asset, engine_amount])."""
    body = [
        record.deposit_id,
        record.account,
        record.token,
        record.amount.to_bytes(U256_BYTES, "big"),
        record.asset,
        record.engine_amount,
    ]
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return bytes((TAG_DEPOSIT,)) + packed


def decode_deposit(entry: bytes) -> DepositRecord:
    """The record of a 0x02 entry; BadEntry unless it is exactly what `deposit_entry`
    writes (one encoding per record, so equal records mean equal entry bytes)."""
    if not entry or entry[0] != TAG_DEPOSIT:
        raise BadEntry(f"not a deposit entry: tag {entry[:1].hex() or 'empty'}")
    try:
        raw: Any = msgpack.unpackb(entry[1:], raw=False, strict_map_key=True)
        if type(raw) is not list or len(raw) != 6:
            raise ValueError("a deposit entry is a list of 6 fields")
        deposit_id, account, token, amount, asset, engine_amount = raw
        if type(amount) is not bytes or len(amount) != U256_BYTES:
            raise ValueError("amount must be 32 bytes")
        record = DepositRecord(
            deposit_id, account, token, int.from_bytes(amount, "big"), asset, engine_amount
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadEntry(f"malformed deposit entry: {exc}") from exc
    if deposit_entry(record) != entry:
        raise BadEntry("deposit entry is not in canonical form")
    return record


def deposit_engine_entry(record: DepositRecord) -> dict[str, Any]:
    """The engine's entry for a deposit (PROTOCOL.md §2): no account/signer/nonce keys."""
    return {
        "action": {
            "type": "deposit",
            "deposit_id": record.deposit_id,
            "account": record.account,
            "asset": record.asset,
            "amount": record.engine_amount,
        }
    }


def entry_tag(entry: bytes) -> int | None:
    """The tag of a payload entry (TAG_INTENT, TAG_DEPOSIT, …), None if empty."""
    return entry[0] if entry else None
