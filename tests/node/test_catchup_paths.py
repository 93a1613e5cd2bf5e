"""The catch-up shortcuts give what the general paths give: a block of trader intents
only (`Executor.committed_entries` maps them without per-entry branches) against the
same intents with a deposit among them (the per-entry loop), and `Outcomes.record`
against the rule it implements, written plainly."""

from __future__ import annotations

import types
from collections import OrderedDict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.events import Accepted, Reason, Rejected
from node.intents import Domain, address_of_private_key, pack_intent, place_action, sign_intent
from node.payload import DepositRecord, deposit_entry, intent_entry, with_signers
from node.runtime.execution import Executor
from node.runtime.outcomes import Outcomes

DOMAIN = Domain(chain_id=31337, verifying_contract=b"\x22" * 20)
KEYS = [(0xCA7C0100 + i).to_bytes(32, "big") for i in range(3)]
ADDRESSES = [address_of_private_key(k) for k in KEYS]


def _executor() -> Any:
    """What `committed_entries` reads of an executor: a member catching up (its
    verified-entry cache empty)."""
    verifier = types.SimpleNamespace(domain=DOMAIN, verified={}, known=None)
    executor = types.SimpleNamespace(_verifier=verifier, _member_addresses=())
    executor._committee_entry = lambda *args: Executor._committee_entry(executor, *args)
    return executor


def test_a_block_of_intents_only_gives_what_the_per_entry_loop_gives() -> None:
    raws, signers = [], []
    for i in range(12):
        action = place_action(i % 2, "buy" if i % 3 else "sell", 100 + i, 1 + i)
        si = sign_intent(KEYS[i % 3], ADDRESSES[i % 3], 1_000 + i, action, DOMAIN)
        raws.append(intent_entry(pack_intent(si)))
        signers.append(ADDRESSES[(i + 1) % 3])  # what the signers entry says is taken
    deposit = deposit_entry(DepositRecord(1, ADDRESSES[0], b"\x01" * 20, 5, 0, 5))
    executor = _executor()
    fast = Executor.committed_entries(executor, with_signers(raws, signers))
    mixed = Executor.committed_entries(
        executor, with_signers([*raws, deposit], [*signers, bytes(20)])
    )
    assert fast == mixed[:-1]
    for e, signer in zip(fast, signers, strict=True):
        assert e.signer == signer == e.engine_entry["signer"]
        assert e.intent_id is not None and len(e.intent_id) == 32
    assert len({e.intent_id for e in fast}) == len(fast)


def _reference_record(
    done: OrderedDict[bytes, tuple[int, Rejected | None]],
    height: int,
    ids: list[bytes | None],
    events: list[list[Any]],
) -> None:
    for intent_id, entry_events in zip(ids, events, strict=True):
        if intent_id is None:
            continue
        rejected = next((e for e in entry_events if type(e) is Rejected), None)
        prior = done.get(intent_id)
        if rejected is not None:
            if rejected.code == Reason.UNAUTHORIZED or prior is not None:
                continue
        elif prior is not None and prior[1] is None:
            continue
        done[intent_id] = (height, rejected)


_ACCEPTED = Accepted(1, b"\x01" * 20, 0, "buy", "limit", 5, 5, "gtc", None)
entry_events = st.sampled_from(
    [
        [],
        [_ACCEPTED],
        [Rejected("no_funds", "x")],
        [_ACCEPTED, Rejected("nonce", "y")],
        [Rejected(Reason.UNAUTHORIZED, "z")],
    ]
)


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(st.tuples(st.none() | st.sampled_from([b"a", b"b", b"c", b"d"]), entry_events)),
        max_size=6,
    )
)
def test_outcomes_record_follows_the_rule(blocks: list[list[tuple[Any, Any]]]) -> None:
    outcomes = Outcomes(max_items=3)
    reference: OrderedDict[bytes, tuple[int, Rejected | None]] = OrderedDict()
    for height, block in enumerate(blocks, start=1):
        ids = [i for i, _ in block]
        events = [e for _, e in block]
        outcomes.record(height, ids, events)
        _reference_record(reference, height, ids, events)
        while len(reference) > 3:
            reference.popitem(last=False)
        assert outcomes.dump() == [
            [i, h, None, None] if r is None else [i, h, r.code, r.message]
            for i, (h, r) in reference.items()
        ]
