"""Wire encoding of consensus messages: round trips, strict decoding, the test vector."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from consensus_testkit import CHAIN_ID, Kit

from consensus.crypto import Ed25519Scheme, Ed25519Signer, sha256
from consensus.errors import Malformed
from consensus.types import (
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    SyncInfo,
    Vote,
    VoteData,
    decode_message,
    encode_message,
    genesis_block,
)

# docs/CONSENSUS.md, "Test vector": keep both in step.
VECTOR_SEED = bytes(range(32))
VECTOR_PUBLIC_KEY = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
VECTOR_SIGNING_BYTES = (
    "96b87365716e65742f636f6e73656e7375732f76312f766f7465c40b7365716e65742d74657374"
    "c420496aca80e4d8f29fb8e8cd816c3afb48d3f103970b3a2ee1600c08ca67326dee07"
    "c420e47125968b3b71049fbc4802d1e40a71ea1359decfabacf70b34588037d4ff0c06"
)
VECTOR_SIGNATURE = (
    "2e331035dc816ec34a486f46b0d3348ec7ab72f88c96d2c5cca967f97475498d"
    "614ce130026064b0dd8a2935a3027eb1c0747bbfccb039d323419af79493be03"
)
VECTOR_MESSAGE = (
    "940294c420496aca80e4d8f29fb8e8cd816c3afb48d3f103970b3a2ee1600c08ca67326dee07"
    "c420e47125968b3b71049fbc4802d1e40a71ea1359decfabacf70b34588037d4ff0c0602c440"
    + VECTOR_SIGNATURE
)


def test_vote_test_vector() -> None:
    signer = Ed25519Signer(VECTOR_SEED)
    assert signer.public_key.hex() == VECTOR_PUBLIC_KEY
    vd = VoteData(sha256(b"block"), 7, sha256(b"parent"), 6)
    signing = vd.signing_bytes(CHAIN_ID)
    assert signing.hex() == VECTOR_SIGNING_BYTES
    signature = signer.sign(signing)
    assert signature.hex() == VECTOR_SIGNATURE  # Ed25519 is deterministic
    vote = Vote(vd, 2, signature)
    assert encode_message(vote).hex() == VECTOR_MESSAGE
    assert decode_message(bytes.fromhex(VECTOR_MESSAGE)) == vote
    assert Ed25519Scheme().verify(signer.public_key, signing, signature)


def _messages(kit: Kit) -> list[Message]:
    chain = kit.chain(3)
    qc1 = kit.qc(chain[1])
    tc = kit.tc(2, [qc1, kit.genesis_qc, qc1])
    b3 = kit.block(3, chain[1], qc=qc1, payload=(b"a", b"", b"\x00" * 100))
    return [
        Proposal(b3, tc),
        Proposal(chain[2], None),
        kit.vote(chain[2], 1),
        kit.timeout(3, qc1, 2, tc),
        kit.timeout(2, kit.genesis_qc, 0),
        SyncInfo(qc1, None),
        SyncInfo(qc1, tc),
        BlockRequest(chain[3].id, 64),
        BlockResponse((chain[3], chain[2], chain[1])),
    ]


def test_round_trip_every_message() -> None:
    for msg in _messages(Kit()):
        data = encode_message(msg)
        back = decode_message(data)
        assert back == msg
        assert encode_message(back) == data


def test_block_id_binds_content_and_qc_signers_not_signature_bytes() -> None:
    kit = Kit()
    g = kit.genesis
    b1 = kit.block(1, g, payload=(b"x",))
    b2 = kit.block(1, g, payload=(b"y",))
    assert b1.id != b2.id
    chain = kit.chain(1)
    qc_a = kit.qc(chain[1], [0, 1, 2])
    qc_b = kit.qc(chain[1], [1, 2, 3])
    # Who voted is agreed history (leader reputation reads it), so it is in the id ...
    assert kit.block(2, chain[1], qc=qc_a).id != kit.block(2, chain[1], qc=qc_b).id
    # ... but not the signature bytes, which a signer could vary without changing who voted.
    other_bytes = dataclasses.replace(qc_a, signatures=tuple(bytes(64) for _ in range(3)))
    assert kit.block(2, chain[1], qc=qc_a).id == kit.block(2, chain[1], qc=other_bytes).id
    assert genesis_block(b"other-chain").id != g.id


@pytest.mark.parametrize(
    "obj",
    [
        [],
        [99, 1],
        ["2", 1],
        [2, [b"\x00" * 32, 1, b"\x00" * 32, 0], 0],  # vote with a missing field
        [2, [b"\x00" * 32, True, b"\x00" * 32, 0], 0, b"\x00" * 64],  # bool is not a round
        [2, [b"\x00" * 32, -1, b"\x00" * 32, 0], 0, b"\x00" * 64],
        [2, [b"\x00" * 31, 1, b"\x00" * 32, 0], 0, b"\x00" * 64],  # short id
        [2, [b"\x00" * 32, 1, b"\x00" * 32, 0], 0, b"\x00" * 63],  # short signature
        [2, [b"\x00" * 32, 1, b"\x00" * 32, 0], 0, "sig"],
        [5, b"\x00" * 32, 0],  # block request for zero blocks
        [5, b"\x00" * 32, 10_000],
        [6, []],  # empty block response
        {"a": 1},
    ],
)
def test_malformed_messages(obj: object) -> None:
    with pytest.raises(Malformed):
        decode_message(msgpack.packb(obj, use_bin_type=True))


def test_not_msgpack() -> None:
    with pytest.raises(Malformed):
        decode_message(b"\xc1")
    with pytest.raises(Malformed):
        decode_message(b"\x92\x02")  # truncated
