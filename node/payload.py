"""What a block's payload entries and the committed log hold (docs/PROTOCOL.md §6).

The consensus core treats a payload as opaque bytes; the node gives each entry a one-byte
tag so that other kinds (deposits from the chain watcher) can join trader intents later
without a format change:

    0x01 ‖ msgpack(signed intent)            (PROTOCOL.md §4 wire form)

Every replica decodes and checks every entry's signature before it votes for a block (a
cache keyed by the entry bytes makes that free for intents it has already seen). The
committed log stores, per block, the block's wire form plus the recovered signer of each
entry, so that replaying the log after a restart costs no signature recoveries.
"""

from __future__ import annotations

from typing import Any

import msgpack

from consensus.types import Block
from node.intents import IntentError, SignedIntent, unpack_intent

TAG_INTENT = 0x01
MAX_SIGNER_BYTES = 20


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
