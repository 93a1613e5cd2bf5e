"""What a block's payload entries and the committed log hold (docs/PROTOCOL.md §9).

The consensus core treats a payload as opaque bytes; the node gives each entry a one-byte
tag so that other kinds (deposits from the chain watcher) can join trader intents later
without a format change:

    0x01 ‖ msgpack(signed intent)            (PROTOCOL.md §4 wire form)
    0x02 ‖ msgpack(deposit record)           (PROTOCOL.md §7, from the chain watcher)

Every replica decodes and checks every entry's signature before it votes for a block (a
cache keyed by the entry bytes makes that free for intents it has already seen). The
committed log stores, per block, the block's wire form plus the recovered signer of each
entry, so that replaying the log after a restart costs no signature recoveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.types import Block
from node.intents import IntentError, SignedIntent, unpack_intent

TAG_INTENT = 0x01
TAG_DEPOSIT = 0x02
MAX_SIGNER_BYTES = 20
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
U256_BYTES = 32


class BadEntry(Exception):
    """A payload entry that no honest leader would propose."""


def intent_entry(packed_intent: bytes) -> bytes:
    return bytes((TAG_INTENT,)) + packed_intent


def decode_entry(entry: bytes) -> SignedIntent:
    if not entry or entry[0] != TAG_INTENT:
        raise BadEntry(f"unknown payload entry tag {entry[:1].hex() or 'empty'}")
    try:
        return unpack_intent(entry[1:])
    except IntentError as exc:
        raise BadEntry(f"{exc.code}: {exc.message}") from exc


def encode_committed(block: Block, signers: list[bytes]) -> bytes:
    data: bytes = msgpack.packb([block.to_wire(), signers], use_bin_type=True)
    return data


def decode_committed(data: bytes) -> tuple[Block, list[bytes]]:
    raw: Any = msgpack.unpackb(data, raw=False)
    block = Block.from_wire(raw[0])
    signers = list(raw[1])
    if len(signers) != len(block.payload) or any(
        not isinstance(s, bytes) or len(s) != MAX_SIGNER_BYTES for s in signers
    ):
        raise ValueError("committed record: signers do not match the payload")
    return block, signers


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
