"""Bad input, authorization, nonces, deposits and withdrawals: each refusal has a reason
and leaves the state (everything but the consumed nonce) untouched."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.accounts import (
    MAX_AGENT_KEYS,
    MAX_AGENTS,
    NONCE_FUTURE_MS,
    NONCE_PAST_MS,
    NONCE_SET_SIZE,
)
from matching.config import ConfigError, Genesis
from matching.engine import Engine
from matching.events import AgentApproved, AgentRevoked, Deposited, Reason, Rejected, Withdrawn
from tests.matching.helpers import (
    AGENT,
    ALICE,
    BOB,
    ETH,
    USDC,
    Harness,
    approve,
    cancel,
    cancel_all,
    genesis,
    genesis_dict,
    place,
    revoke,
    state_view,
    withdraw,
)

U64 = 2**64 - 1


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.fund(ALICE, USDC, 1_000_000)
    h.fund(ALICE, ETH, 10_000)
    return h


def code_of(events: list[Any]) -> str:
    assert len(events) == 1 and isinstance(events[0], Rejected), events
    assert events[0].message  # every rejection explains itself
    return str(events[0].code)


BAD_PLACES = [
    ({"market": 9}, Reason.UNKNOWN_MARKET),
    ({"market": "0"}, Reason.UNKNOWN_MARKET),
    ({"market": True}, Reason.UNKNOWN_MARKET),
    ({"side": "long"}, Reason.BAD_SIDE),
    ({"kind": "stop"}, Reason.BAD_KIND),
    ({"tif": "day"}, Reason.BAD_TIF),
    ({"size": 0}, Reason.BAD_SIZE),
    ({"size": -10}, Reason.BAD_SIZE),
    ({"size": 15}, Reason.OFF_LOT),
    ({"size": 2**64}, Reason.OVERFLOW),
    ({"size": 10.0}, Reason.BAD_TYPE),
    ({"size": "10"}, Reason.BAD_TYPE),
    ({"size": True}, Reason.BAD_TYPE),
    ({"price": 0}, Reason.BAD_PRICE),
    ({"price": -5}, Reason.BAD_PRICE),
    ({"price": 1001}, Reason.OFF_TICK),
    ({"price": 2**70}, Reason.OVERFLOW),
    ({"price": None}, Reason.BAD_TYPE),
    ({"reduce_only": 1}, Reason.BAD_TYPE),
    ({"cloid": -1}, Reason.BAD_TYPE),
    ({"cloid": 2**64}, Reason.BAD_TYPE),
    ({"expires_ms": "soon"}, Reason.BAD_TYPE),
]


@pytest.mark.parametrize(("change", "code"), BAD_PLACES)
def test_bad_place_fields_are_rejected_with_a_reason(
    h: Harness, change: dict[str, Any], code: str
) -> None:
    before = state_view(h.engine)
    action = {**place(price=1000, size=10), **change}
    assert code_of(h.one(ALICE, action)) == code
    assert state_view(h.engine) == before


@pytest.mark.parametrize(
    "action",
    [
        {"type": "place", "market": 0},
        {**place(), "extra": 1},
        {"type": "cancel", "market": 0},
        {"type": "cancel", "market": 0, "oid": 1, "x": 2},
        {"type": "cancel_cloid"},
        {"type": "cancel_all"},
        {"type": "modify", "market": 0, "oid": 1},
        {"type": "withdraw", "asset": 0},
        {"type": "approve_agent", "agent": AGENT},
        {"type": "revoke_agent"},
        {"type": "revoke_agent", "agent": AGENT, "name": "bot"},
    ],
)
def test_missing_or_extra_fields_are_malformed(h: Harness, action: dict[str, Any]) -> None:
    before = state_view(h.engine)
    assert code_of(h.one(ALICE, action)) == Reason.MALFORMED
    assert state_view(h.engine) == before


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ("not a dict", Reason.MALFORMED),
        ({}, Reason.MALFORMED),
        ({"action": []}, Reason.MALFORMED),
        ({"action": {"type": "teleport"}}, Reason.UNKNOWN_ACTION),
        ({"action": {"type": ["place"]}}, Reason.UNKNOWN_ACTION),
        ({"action": place()}, Reason.MALFORMED),
        ({"account": ALICE, "signer": ALICE, "nonce": -1, "action": place()}, Reason.BAD_TYPE),
        ({"account": ALICE[:19], "signer": ALICE, "nonce": 1, "action": place()}, Reason.BAD_TYPE),
        ({"account": "0xab", "signer": ALICE, "nonce": 1, "action": place()}, Reason.BAD_TYPE),
    ],
)
def test_malformed_entries_are_rejected(h: Harness, entry: Any, code: str) -> None:
    before = state_view(h.engine)
    assert code_of(h.block([entry]).events[0]) == code
    assert state_view(h.engine) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=24),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


ACTION_TYPES = ["place", "cancel", "cancel_cloid", "cancel_all", "modify", "withdraw"]
ACTION_TYPES += ["approve_agent", "revoke_agent", "deposit", "x"]
FIELDS = ["market", "side", "kind", "price", "size", "tif", "reduce_only", "cloid"]
FIELDS += ["expires_ms", "oid", "asset", "amount", "agent", "name", "deposit_id", "account"]


@settings(max_examples=150, deadline=None)
@given(
    action=st.fixed_dictionaries(
        {"type": st.sampled_from(ACTION_TYPES)}, optional=dict.fromkeys(FIELDS, json_values)
    ),
    junk=json_values,
)
def test_garbage_never_raises(action: dict[str, Any], junk: Any) -> None:
    h = Harness()
    h.fund(ALICE, USDC, 10**6)
    result = h.block([h.entry(ALICE, action), junk, {"action": junk}])
    assert len(result.events) == 3
    assert result.events[1] and result.events[2]  # junk entries are always answered


def nested(depth: int, container: str, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        if container == "list":
            value = [value]
        elif container == "dict":
            value = {"k": value}
        else:
            value = (value,)
    return value


WELL_FORMED = {
    "place": place(),
    "cancel": cancel(1),
    "cancel_cloid": {"type": "cancel_cloid", "market": 0, "cloid": 1},
    "cancel_all": cancel_all(),
    "modify": {"type": "modify", "market": 0, "oid": 1, "price": 100, "size": 10},
    "withdraw": withdraw(USDC, 1),
    "approve_agent": approve(AGENT),
    "revoke_agent": revoke(AGENT),
}


def check_rejections_are_bounded(events: list[Any]) -> None:
    assert events  # every entry is answered
    for event in events:
        if isinstance(event, Rejected):
            assert len(event.message) <= 200, event.message


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(WELL_FORMED)),
    field=st.sampled_from(["type", "account", "signer", "nonce", "action", *FIELDS]),
    depth=st.integers(1, 3_000),
    container=st.sampled_from(["list", "dict", "tuple"]),
)
def test_deep_nesting_anywhere_is_a_rejection_never_a_traceback(
    kind: str, field: str, depth: int, container: str
) -> None:
    """PROTOCOL input is flat, so the engine never walks into a value; a value nested
    past the interpreter's recursion limit in any field gets a `rejected` event with a
    short message (once, the message quoted it with repr and apply_block raised)."""
    h = Harness()
    h.fund(ALICE, USDC, 10**6)
    deep = nested(depth, container)
    entry = h.entry(ALICE, dict(WELL_FORMED[kind]))
    if field in ("account", "signer", "nonce", "action"):
        entry[field] = deep
    else:
        entry["action"][field] = deep
    result = h.block([entry, {"action": deep}, deep])
    for events in result.events:
        check_rejections_are_bounded(events)


@pytest.mark.parametrize("container", ["list", "dict", "tuple"])
def test_nesting_far_past_the_recursion_limit(container: str) -> None:
    h = Harness()
    deep = nested(200_000, container)
    entries = [{"action": {"type": deep}}]
    entries += [h.entry(ALICE, {**place(), name: deep}) for name in ("market", "side", "tif")]
    entries += [h.entry(ALICE, {**place(), "size": 10**6000}), h.entry(ALICE, cancel(deep))]
    result = h.block(entries)
    assert [e[0].code for e in result.events] == [  # type: ignore[union-attr]
        Reason.UNKNOWN_ACTION,
        Reason.UNKNOWN_MARKET,
        Reason.BAD_SIDE,
        Reason.BAD_TIF,
        Reason.OVERFLOW,
        Reason.UNKNOWN_ORDER,
    ]
    for events in result.events:
        check_rejections_are_bounded(events)


# ---------------------------------------------------------------------------- agents


def test_agent_may_trade_but_not_withdraw_or_approve(h: Harness) -> None:
    assert code_of(h.one(ALICE, place(price=1000, size=10), signer=AGENT)) == Reason.UNAUTHORIZED
    assert h.one(ALICE, approve(AGENT, "bot")) == [AgentApproved(ALICE, AGENT, "bot")]
    assert h.one(ALICE, place(price=1000, size=10), signer=AGENT)[0].oid == 1  # type: ignore[union-attr]
    assert code_of(h.one(ALICE, cancel(1), signer=BOB)) == Reason.UNAUTHORIZED
    assert code_of(h.one(ALICE, withdraw(USDC, 1), signer=AGENT)) == Reason.AGENT_FORBIDDEN
    assert code_of(h.one(ALICE, approve(BOB), signer=AGENT)) == Reason.AGENT_FORBIDDEN
    assert code_of(h.one(ALICE, approve(ALICE))) == Reason.BAD_AGENT
    assert code_of(h.one(ALICE, approve(AGENT, "x" * 33))) == Reason.BAD_TYPE


def test_revoked_agent_may_no_longer_sign(h: Harness) -> None:
    assert h.one(ALICE, approve(AGENT)) == [AgentApproved(ALICE, AGENT, "bot")]
    assert h.engine.is_authorized(ALICE, AGENT) and h.engine.is_authorized(ALICE, ALICE)
    placed = h.entry(ALICE, place(price=1000, size=10), signer=AGENT)
    assert h.block([placed]).events[0][0].oid == 1  # type: ignore[union-attr]
    assert code_of(h.one(ALICE, revoke(AGENT), signer=AGENT)) == Reason.AGENT_FORBIDDEN
    assert h.one(ALICE, revoke(AGENT)) == [AgentRevoked(ALICE, AGENT)]
    assert not h.engine.is_authorized(ALICE, AGENT)
    assert not h.engine.is_authorized(BOB, AGENT)  # an account the engine never saw
    assert code_of(h.one(ALICE, cancel(1), signer=AGENT)) == Reason.UNAUTHORIZED
    assert [o.oid for o in h.engine.open_orders(ALICE)] == [1]  # the account's orders stay
    assert code_of(h.one(ALICE, revoke(AGENT))) == Reason.UNKNOWN_AGENT
    assert code_of(h.one(ALICE, revoke(b"\x01" * 19))) == Reason.BAD_AGENT
    # Approved again, the agent still cannot replay what it signed before.
    h.one(ALICE, approve(AGENT))
    assert code_of(h.block([placed]).events[0]) == Reason.NONCE_REUSED
    assert h.one(ALICE, cancel(1), signer=AGENT)[0].reason == Reason.USER  # type: ignore[union-attr]


def test_revoked_agents_keep_nonces_only_inside_the_window(h: Harness) -> None:
    """An account keeps nonces for MAX_AGENT_KEYS agent keys: a revoked key's go once
    they are all below the replay window, so approve/revoke churn is bounded."""
    keys = [bytes([9, i]) + bytes(18) for i in range(MAX_AGENT_KEYS + 1)]
    for key in keys[:MAX_AGENT_KEYS]:
        h.one(ALICE, approve(key))
        h.one(ALICE, cancel_all(), signer=key)  # the key's nonce is now kept
        h.one(ALICE, revoke(key))
    account = h.engine.accounts[ALICE]
    assert len(account.agent_nonces) == MAX_AGENT_KEYS and not account.agents
    assert code_of(h.one(ALICE, approve(keys[-1]))) == Reason.TOO_MANY_AGENTS
    assert h.one(ALICE, approve(keys[0]))[0] == AgentApproved(ALICE, keys[0], "bot")
    h.block([], advance_ms=NONCE_PAST_MS + 10_000)  # every agent nonce leaves the window
    h.nonce = h.ts
    assert h.one(ALICE, approve(keys[-1]))[0] == AgentApproved(ALICE, keys[-1], "bot")
    assert list(account.agent_nonces) == [keys[0]]  # approved: kept; the rest dropped
    assert len(account.agents) == 2 <= MAX_AGENTS


def test_agent_count_is_bounded(h: Harness) -> None:
    for i in range(16):
        h.one(ALICE, approve(bytes([7, i]) + bytes(18)))
    assert code_of(h.one(ALICE, approve(bytes([8]) + bytes(19)))) == Reason.TOO_MANY_AGENTS
    assert h.one(ALICE, approve(bytes([7, 0]) + bytes(18), "renamed"))  # re-approval is fine


# ---------------------------------------------------------------------------- nonces


def signed(account: bytes, nonce: int, action: dict[str, Any]) -> dict[str, Any]:
    return {"account": account, "signer": account, "nonce": nonce, "action": action}


def test_nonce_reuse_is_rejected_and_out_of_order_is_fine(h: Harness) -> None:
    n = h.ts
    ok = h.block([signed(ALICE, n + 10, cancel(99)), signed(ALICE, n + 5, cancel(99))])
    assert [e[0].code for e in ok.events] == [Reason.UNKNOWN_ORDER] * 2  # type: ignore[union-attr]
    again = h.block([signed(ALICE, n + 5, cancel(99))])
    assert code_of(again.events[0]) == Reason.NONCE_REUSED


def test_nonce_window_and_full_set(h: Harness) -> None:
    ts = h.ts + 1
    late = signed(ALICE, ts - NONCE_PAST_MS - 1, cancel(1))
    early = signed(ALICE, ts + NONCE_FUTURE_MS + 1, cancel(1))
    edge = signed(ALICE, ts - NONCE_PAST_MS, cancel(1))
    result = h.block([late, early, edge])
    codes = [e[0].code for e in result.events]  # type: ignore[union-attr]
    assert codes == [Reason.NONCE_OUT_OF_WINDOW, Reason.NONCE_OUT_OF_WINDOW, Reason.UNKNOWN_ORDER]
    base = h.ts
    h.block([signed(ALICE, base + i, cancel(1)) for i in range(1, NONCE_SET_SIZE + 1)])
    smallest_kept = min(h.engine.accounts[ALICE].nonces)
    result = h.block([signed(ALICE, smallest_kept - 1, cancel(1))])
    assert code_of(result.events[0]) == Reason.NONCE_TOO_OLD
    assert len(h.engine.accounts[ALICE].nonces) == NONCE_SET_SIZE


def test_rejected_action_still_consumes_its_nonce(h: Harness) -> None:
    entry = signed(ALICE, h.ts + 3, place(price=1000, size=10**9))
    assert code_of(h.block([entry]).events[0]) == Reason.INSUFFICIENT_BALANCE
    h.fund(ALICE, USDC, 10**12)
    assert code_of(h.block([entry]).events[0]) == Reason.NONCE_REUSED


# ------------------------------------------------------------------ deposits, withdrawals


def test_deposits_apply_strictly_in_order(h: Harness) -> None:
    last = h.engine.last_deposit_id
    dep = {"type": "deposit", "deposit_id": last + 2, "account": BOB, "asset": USDC, "amount": 5}
    assert code_of(h.block([{"action": dep}]).events[0]) == Reason.DEPOSIT_OUT_OF_ORDER
    assert h.engine.last_deposit_id == last
    ev = h.block([{"action": {**dep, "deposit_id": last + 1}}]).events[0]
    assert ev[0] == Deposited(last + 1, BOB, USDC, 5)
    assert h.balance(BOB, USDC) == (5, 0)


def test_invalid_deposit_with_the_next_id_is_consumed_without_credit(h: Harness) -> None:
    last = h.engine.last_deposit_id
    dep = {"type": "deposit", "deposit_id": last + 1, "account": BOB, "asset": 77, "amount": 5}
    assert code_of(h.block([{"action": dep}]).events[0]) == Reason.UNKNOWN_ASSET
    assert h.engine.last_deposit_id == last + 1


def test_withdraw(h: Harness) -> None:
    before = state_view(h.engine)
    assert code_of(h.one(ALICE, withdraw(USDC, 1_000_001))) == Reason.INSUFFICIENT_BALANCE
    assert code_of(h.one(ALICE, withdraw(9, 1))) == Reason.UNKNOWN_ASSET
    assert code_of(h.one(ALICE, withdraw(USDC, 0))) == Reason.BAD_AMOUNT
    assert code_of(h.one(ALICE, withdraw(USDC, U64 + 1))) == Reason.BAD_AMOUNT
    assert state_view(h.engine) == before
    h.one(ALICE, place(price=1000, size=100))  # locks 10,030
    assert code_of(h.one(ALICE, withdraw(USDC, 1_000_000))) == Reason.INSUFFICIENT_BALANCE
    ev = h.one(ALICE, withdraw(USDC, 989_970))
    assert ev[0] == Withdrawn(1, ALICE, USDC, 989_970)
    assert h.balance(ALICE, USDC) == (0, 10_030)
    checkpoint = h.engine.checkpoint()
    assert [(w.withdrawal_id, w.account, w.amount) for w in checkpoint.withdrawals] == [
        (1, ALICE, 989_970)
    ]


# --------------------------------------------------------------------------------- config


def test_genesis_round_trips_and_refuses_nonsense() -> None:
    assert Genesis.from_dict(genesis().to_dict()) == genesis()
    bad = genesis_dict()
    bad["markets"][0]["base"] = 42
    with pytest.raises(ConfigError):
        Genesis.from_dict(bad)
    bad = genesis_dict()
    bad["assets"][1]["unit"] = 3
    with pytest.raises(ConfigError):
        Genesis.from_dict(bad)


def test_block_timestamp_may_not_go_back() -> None:
    engine = Engine(genesis())
    engine.apply_block(10, [])
    with pytest.raises(ValueError):
        engine.apply_block(9, [])
