"""Whatever a peer sends, decoding either yields a message or raises `Malformed`."""

from __future__ import annotations

import contextlib

import msgpack
from consensus_testkit import Kit
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.errors import InvalidMessage, Malformed
from consensus.types import Proposal, decode_message, encode_message

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.binary(max_size=70),
    st.sampled_from([bytes(32), bytes(64)]),
    st.text(max_size=5),
)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=8), max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(tag=st.integers(min_value=0, max_value=7), fields=st.lists(values, max_size=8))
def test_structured_garbage(tag: int, fields: list[object]) -> None:
    data = msgpack.packb([tag, *fields], use_bin_type=True)
    with contextlib.suppress(Malformed):
        decode_message(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    with contextlib.suppress(Malformed):
        decode_message(data)


_KIT = Kit(4)
_PROPOSAL = encode_message(Proposal(_KIT.chain(2)[2], None))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_PROPOSAL) - 1), st.integers(0, 255))
def test_bit_flips_never_verify_as_something_else(position: int, value: int) -> None:
    """A corrupted proposal is refused with a typed error, or is the same proposal."""
    data = bytearray(_PROPOSAL)
    data[position] = value
    verifier = _KIT.verifier()
    try:
        verified = verifier.decode(2, bytes(data))
    except InvalidMessage:
        return
    assert verified.msg == decode_message(_PROPOSAL)
