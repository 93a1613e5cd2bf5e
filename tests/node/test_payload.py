"""Payload entries: the signers entry that lets replay and sync skip signature recovery
(PROTOCOL.md §9.1), how a voter checks it, and the outcomes a member snapshot carries."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.events import Reason, Rejected
from node.intents import (
    Domain,
    IntentError,
    address_of_private_key,
    committed_intent,
    pack_intent,
    place_action,
    sign_intent,
    unpack_intent,
)
from node.payload import (
    NO_SIGNER,
    BadEntry,
    DepositRecord,
    decode_committed,
    deposit_entry,
    encode_committed,
    intent_entry,
    signers_entry,
    split_payload,
    with_signers,
)
from node.runtime.outcomes import Outcomes
from node.runtime.verification import EntryVerifier
from tests.consensus.consensus_testkit import Kit

DOMAIN = Domain(31337, bytes(20))
# anvil's second account: 0x70997970c51812dc3a010c7d01b50e0d17dc79c8
KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
SIGNER = address_of_private_key(KEY)
DEPOSIT = deposit_entry(DepositRecord(1, SIGNER, bytes(19) + b"\x01", 10**6, 0, 1))


def intent(nonce: int = 1_700_000_000_000) -> bytes:
    si = sign_intent(KEY, SIGNER, nonce, place_action(0, "buy", 3_000_000, 10**6), DOMAIN)
    return intent_entry(pack_intent(si))


def verifier() -> EntryVerifier:
    return EntryVerifier(DOMAIN, threads=0, verified_bytes=1 << 20, bad_bytes=1 << 20)


def test_signers_entry_vector_of_protocol_section_9_1() -> None:
    assert SIGNER.hex() == "70997970c51812dc3a010c7d01b50e0d17dc79c8"
    payload = with_signers([DEPOSIT, intent()], [NO_SIGNER, SIGNER])
    assert payload[-1].hex() == "03" + "00" * 20 + "70997970c51812dc3a010c7d01b50e0d17dc79c8"
    assert split_payload(payload) == (payload[:-1], [NO_SIGNER, SIGNER])
    assert with_signers([], []) == () and split_payload(()) == ((), [])


@pytest.mark.parametrize(
    "payload",
    [
        (intent(),),  # no signers entry
        (intent(), signers_entry([])),  # too few signers
        (intent(), signers_entry([SIGNER, SIGNER])),  # too many
        (signers_entry([]),),  # a signers entry alone
        (intent(), signers_entry([SIGNER]) + b"\x00"),  # a stray byte
        (intent(), b"\x01" + SIGNER),  # the wrong tag
    ],
)
def test_a_payload_without_one_signer_per_entry_does_not_split(payload: tuple[bytes, ...]) -> None:
    with pytest.raises(BadEntry):
        split_payload(payload)


@given(st.lists(st.binary(min_size=20, max_size=20), max_size=20), st.binary(max_size=3))
def test_split_inverts_with_signers(signers: list[bytes], junk: bytes) -> None:
    entries = [b"\x01" + junk + bytes([i]) for i in range(len(signers))]
    assert split_payload(with_signers(entries, signers)) == (tuple(entries), signers)


async def test_a_voter_checks_the_signers_entry_against_what_it_recovers() -> None:
    good = with_signers([DEPOSIT, intent()], [NO_SIGNER, SIGNER])
    assert await verifier().check_payload(good) is None
    lying = with_signers([DEPOSIT, intent()], [NO_SIGNER, bytes(19) + b"\x07"])
    why = await verifier().check_payload(lying)
    assert why is not None and "signers entry names" in why
    deposit_signed = with_signers([DEPOSIT, intent()], [SIGNER, SIGNER])
    assert await verifier().check_payload(deposit_signed) is not None
    missing = await verifier().check_payload((DEPOSIT, intent()))
    assert missing is not None and "signer per entry" in missing
    # A cached entry is checked against the signers entry as well.
    v = verifier()
    assert await v.check_payload(good) is None
    assert await v.check_payload(lying) is not None


def test_committed_record_is_the_block_wire_form_and_checks_its_payload() -> None:
    kit = Kit()
    block = kit.block(1, kit.genesis, payload=with_signers([intent()], [SIGNER]))
    record = encode_committed(block)
    assert msgpack.unpackb(record, raw=False) == msgpack.unpackb(
        msgpack.packb(block.to_wire(), use_bin_type=True), raw=False
    )
    assert decode_committed(record).id == block.id
    unsigned = kit.block(1, kit.genesis, payload=(intent(),))
    with pytest.raises(BadEntry):
        decode_committed(encode_committed(unsigned))


def test_outcomes_dump_and_load_give_the_same_answers_and_order() -> None:
    ids = [bytes([i]) * 32 for i in range(6)]
    events = [[], [Rejected(Reason.NONCE_REUSED, "nonce 5 was used")], [], [], [], []]
    original = Outcomes(max_items=5)
    original.record(7, ids, events)  # keeps the last 5
    copy = Outcomes(max_items=5)
    copy.load(msgpack.unpackb(msgpack.packb(original.dump(), use_bin_type=True), raw=False))
    assert copy.dump() == original.dump() and len(copy) == 5
    for i in ids:
        assert copy.result(i) == original.result(i)
    rejected = copy.result(ids[1])
    assert rejected is not None and rejected.status == "rejected" and rejected.height == 7
    # The index goes on evicting in the same order after a load.
    more = [bytes([9]) * 32]
    original.record(8, more, [[]])
    copy.record(8, more, [[]])
    assert copy.dump() == original.dump()


ACTIONS: list[dict[str, Any]] = [
    place_action(0, "buy", 3_000_000, 10**6),
    {"type": "cancel", "market": 1, "oid": 7},
    {"type": "cancel_all", "market": None},
    {"type": "withdraw", "asset": 1, "amount": 5},
    {"type": "approve_agent", "agent": bytes(19) + b"\x09", "name": "bot"},
]


@given(st.sampled_from(ACTIONS), st.randoms(use_true_random=False), st.integers(1, 2**63))
def test_committed_intents_decode_as_the_full_path_does(
    action: dict[str, Any], rng: random.Random, nonce: int
) -> None:
    """Replay's shortcut (node/intents.py `committed_intent`) gives the validated intent,
    whatever key order the packed bytes use; so the same id and the same engine entry."""
    si = sign_intent(KEY, SIGNER, nonce, action, DOMAIN)
    wire = msgpack.unpackb(pack_intent(si), raw=False)
    items = list(wire["action"].items())
    rng.shuffle(items)
    wire["action"] = dict(items)
    outer = list(wire.items())
    rng.shuffle(outer)
    packed = msgpack.packb(dict(outer), use_bin_type=True)
    full = unpack_intent(packed)
    fast = committed_intent(packed)
    assert fast == full and list(fast.action) == list(full.action)
    assert fast.digest(DOMAIN) == si.digest(DOMAIN)


def test_a_committed_intent_that_is_not_well_formed_takes_the_full_path() -> None:
    with pytest.raises(IntentError):
        committed_intent(msgpack.packb({"action": {"type": "nope"}}, use_bin_type=True))
