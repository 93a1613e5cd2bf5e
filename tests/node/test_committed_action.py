"""`committed_action` (the catch-up and replay path) gives exactly what the general path
gives: `committed_intent` and `SignedIntent.digest`, for every kind of action, in any
key order a leader's block may carry, and for entries the fast path does not take."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from node.intents import (
    SCHEMA,
    Domain,
    MalformedIntent,
    _action_dict,
    _committed_action_general,
    _decode_committed_intent,
    _encode_canonical,
    address_of_private_key,
    committed_action,
    committed_intent,
    pack_intent,
    place_action,
    sign_intent,
)

DOMAIN = Domain(chain_id=31337, verifying_contract=b"\x22" * 20)
KEY = (0xCA7C0001).to_bytes(32, "big")
ACCOUNT = address_of_private_key(KEY)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
actions = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("place"),
            "market": u32,
            "side": st.sampled_from(["buy", "sell"]),
            "kind": st.sampled_from(["limit", "market"]),
            "price": u64,
            "size": u64,
            "tif": st.sampled_from(["gtc", "ioc", "fok", "post"]),
            "reduce_only": st.booleans(),
            "cloid": st.none() | u64,
            "expires_ms": st.none() | u64,
        }
    ),
    st.fixed_dictionaries({"type": st.just("cancel"), "market": u32, "oid": u64}),
    st.fixed_dictionaries({"type": st.just("cancel_cloid"), "market": u32, "cloid": u64}),
    st.fixed_dictionaries({"type": st.just("cancel_all"), "market": st.none() | u32}),
    st.fixed_dictionaries(
        {"type": st.just("modify"), "market": u32, "oid": u64, "price": u64, "size": u64}
    ),
    st.fixed_dictionaries(
        {"type": st.just("set_leverage"), "market": u32, "leverage": u32, "isolated": st.booleans()}
    ),
    st.fixed_dictionaries({"type": st.just("add_margin"), "market": u32, "amount": u64}),
    st.fixed_dictionaries({"type": st.just("remove_margin"), "market": u32, "amount": u64}),
    st.fixed_dictionaries(
        {"type": st.just("set_option_margin"), "mode": st.sampled_from(["portfolio", "standard"])}
    ),
    st.fixed_dictionaries({"type": st.just("withdraw"), "asset": u32, "amount": u64}),
    st.fixed_dictionaries(
        {
            "type": st.just("approve_agent"),
            "agent": st.binary(min_size=20, max_size=20),
            "name": st.text(max_size=8),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("revoke_agent"), "agent": st.binary(min_size=20, max_size=20)}
    ),
)


def _shuffled(d: dict[str, Any], order: list[int]) -> dict[str, Any]:
    keys = list(d)
    ranked = sorted(range(len(keys)), key=lambda i: order[i % len(order)] if order else i)
    return {keys[i]: d[keys[i]] for i in ranked}


@settings(max_examples=300)
@given(actions, u64, st.lists(st.integers(0, 20), max_size=12))
def test_committed_action_equals_the_general_path(
    action: dict[str, Any], nonce: int, order: list[int]
) -> None:
    try:
        si = sign_intent(KEY, ACCOUNT, nonce, action, DOMAIN)
    except MalformedIntent:
        assume(False)  # the strategy is wider than the schema (a market order's tif)
    canonical = pack_intent(si)
    # A leader's block may carry the same intent with its keys in another order.
    wire = msgpack.unpackb(canonical, raw=False)
    wire["action"] = _shuffled(wire["action"], order)
    reordered = msgpack.packb(_shuffled(wire, order[::-1]), use_bin_type=True)
    for packed in (canonical, reordered):
        general = committed_intent(packed)
        expected = (general.account, general.nonce, general.action, general.digest(DOMAIN))
        got = committed_action(packed, DOMAIN)
        assert got == expected
        assert list(got[2]) == list(general.action)  # canonical key order too
        assert got[3] == si.digest(DOMAIN)


def _raw_map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map with these pairs as written, repeated keys included (a dict
    cannot hold them; msgpack keeps a repeated key's last value)."""
    assert len(pairs) < 16
    out = bytes((0x80 | len(pairs),))
    for key, value in pairs:
        out += key if isinstance(key, bytes) else msgpack.packb(key, use_bin_type=True)
        out += value if isinstance(value, bytes) else msgpack.packb(value, use_bin_type=True)
    return out


@pytest.mark.parametrize(
    "extra",
    [
        [("price", 9)],  # a repeated field: the last value counts, on both paths
        [("price", b"\x01")],  # bytes: no trading field holds them (the general path decides)
        [("type", "place")],  # a repeated type
        [("type", "cancel")],  # a repeated type that names another kind
        [("price", 1.5)],
        [("side", True)],
    ],
)
def test_repeated_and_odd_keys_get_the_general_answer(extra: list[tuple[str, Any]]) -> None:
    si = sign_intent(KEY, ACCOUNT, 77, place_action(0, "buy", 5, 7), DOMAIN)
    action = _raw_map([*si.action.items(), *extra])
    for intent in (
        _raw_map(
            [
                ("action", action),
                ("account", si.account),
                ("nonce", 77),
                ("signature", si.signature),
            ]
        ),
        _raw_map(
            [
                ("nonce", 1),
                ("action", action),
                ("account", si.account),
                ("nonce", 77),
                ("signature", si.signature),
            ]
        ),
    ):
        assert outcome(lambda p=intent: committed_action(p, DOMAIN)) == outcome(
            lambda p=intent: _committed_action_general(p, DOMAIN)
        )


def outcome(call: Any) -> Any:
    try:
        return ("value", call())
    except Exception as exc:
        return ("error", type(exc), str(exc))


# Values at every msgpack size boundary (fixint, 8/16/32/64-bit ints of both signs,
# fixstr, str8/16/32), which a committed action's fields may hold on the msgspec path.
_INT_EDGES = [
    v
    for b in (0, 5, 7, 8, 15, 16, 31, 32, 63, 64)
    for v in (2**b - 1, 2**b, -(2**b), -(2**b) - 1)
    if -(2**63) <= v < 2**64
]
plain = (
    st.sampled_from(_INT_EDGES)
    | st.integers(-(2**63), 2**64 - 1)
    | st.booleans()
    | st.none()
    | st.text(max_size=40)
    | st.sampled_from([n * "x" for n in (31, 32, 255, 256, 65535, 65536)])
)


@settings(max_examples=400)
@given(st.data())
def test_canonical_bytes_and_dict_from_c_equal_msgpacks(data: st.DataObject) -> None:
    """`committed_action` writes the canonical action (its dict and its msgpack bytes)
    from the decoded struct with msgspec: the same dict, in the same order, and the
    same bytes as msgpack's packer gives for the general path's dict, for any plain
    values (the only ones that path passes on), at every encoding size boundary."""
    kind = data.draw(st.sampled_from(["place", "cancel", "modify", "cancel_all"]))
    names = [name for name, _ in SCHEMA[kind]]
    action = {"type": kind, **{name: data.draw(plain) for name in names}}
    packed = msgpack.packb(
        {"action": action, "account": ACCOUNT, "nonce": 5, "signature": b"\x01" * 65},
        use_bin_type=True,
    )
    struct = _decode_committed_intent(packed).action
    assert _encode_canonical(struct) == msgpack.packb(action, use_bin_type=True)
    got = _action_dict(struct)
    assert got == action and list(got) == list(action)
    assert committed_action(packed, DOMAIN) == _committed_action_general(packed, DOMAIN)
