"""Committee listings (payload tag 0x08, node/listing.py): the entry's bytes, the checks of
its signatures (quorum, distinct members, forged or foreign signatures, another chain),
the voter's check of a block's listings, the member's pool, and the PROTOCOL.md §7.5
vector."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.crypto import Ed25519Scheme, Ed25519Signer
from matching.config import SERIES_TERMS
from node.listing import (
    MAX_BLOCK_LISTINGS,
    MAX_LISTING_BYTES,
    MAX_PENDING_LISTINGS,
    TAG_LISTING,
    BadListing,
    Listing,
    ListingPool,
    block_listings,
    check_listing,
    decode_listing,
    make_listing,
    sign_terms,
    terms_of,
)
from node.payload import TAG_LISTING as PAYLOAD_TAG_LISTING

CHAIN = b"\x11" * 32
SIGNERS = [Ed25519Signer(bytes([i + 1]) * 32) for i in range(4)]
KEYS = tuple(s.public_key for s in SIGNERS)
QUORUM = 3
SCHEME = Ed25519Scheme()


def table(**over: Any) -> dict[str, Any]:
    base = {"id": 40, "symbol": "BTC-27JUN27-120000-C", "underlying": 7, "strike": 120_000,
            "expiry_ms": 1_814_400_000_000, "right": "call", "underlying_lots": 1,
            "vol_e9": 600_000_000, "tick_size": 1, "lot_size": 1, "maker_fee_bps": 2,
            "taker_fee_bps": 5}  # fmt: skip
    return {**base, **over}


def signed(members: tuple[int, ...] = (0, 1, 2), chain: bytes = CHAIN, **over: Any) -> Listing:
    terms = terms_of(table(**over))
    return make_listing(table(**over), {m: sign_terms(SIGNERS[m], chain, terms) for m in members})


def check(entry: bytes, keys: tuple[bytes, ...] = KEYS) -> Listing:
    return check_listing(entry, CHAIN, keys, QUORUM, SCHEME)


def code_of(entry: bytes, keys: tuple[bytes, ...] = KEYS) -> str:
    with pytest.raises(BadListing) as caught:
        check(entry, keys)
    return caught.value.code


def test_a_listing_round_trips_and_becomes_the_engine_entry() -> None:
    listing = signed()
    entry = listing.entry()
    assert entry[0] == TAG_LISTING == PAYLOAD_TAG_LISTING == 0x08
    assert decode_listing(entry) == listing
    assert check(entry) == listing
    assert listing.engine_entry() == {"action": {"type": "list_series", "series": table()}}
    assert list(listing.table()) == list(SERIES_TERMS)
    assert [m for m, _ in listing.signatures] == [0, 1, 2]


def test_signatures_are_ordered_by_member_and_all_four_may_sign() -> None:
    terms = terms_of(table())
    listing = make_listing(table(), [(3, sign_terms(SIGNERS[3], CHAIN, terms)),
                                     (1, sign_terms(SIGNERS[1], CHAIN, terms)),
                                     (0, sign_terms(SIGNERS[0], CHAIN, terms))])  # fmt: skip
    assert [m for m, _ in listing.signatures] == [0, 1, 3]
    check(listing.entry())
    check(signed((0, 1, 2, 3)).entry())


def test_too_few_signers_is_refused() -> None:
    assert code_of(signed((0, 1)).entry()) == "listing_quorum"
    assert code_of(signed((3,)).entry()) == "listing_quorum"


def test_a_duplicate_signer_is_refused() -> None:
    terms = terms_of(table())
    sig = sign_terms(SIGNERS[0], CHAIN, terms)
    with pytest.raises(BadListing, match="twice"):
        make_listing(table(), [(0, sig), (0, sig), (1, sign_terms(SIGNERS[1], CHAIN, terms))])
    # On the wire too: one member twice (not ascending) is not a listing.
    good = signed()
    doubled = Listing(good.terms, (good.signatures[0], good.signatures[0], good.signatures[1]))
    assert code_of(doubled.entry()) == "malformed_listing"
    descending = Listing(good.terms, tuple(reversed(good.signatures)))
    assert code_of(descending.entry()) == "malformed_listing"


def test_a_forged_signature_is_refused() -> None:
    good = signed()
    member, sig = good.signatures[1]
    forged = Listing(good.terms, (good.signatures[0], (member, bytes(64)), good.signatures[2]))
    assert code_of(forged.entry()) == "bad_listing_signature"
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    forged = Listing(good.terms, (good.signatures[0], (member, flipped), good.signatures[2]))
    assert code_of(forged.entry()) == "bad_listing_signature"
    # Signatures of other terms do not carry over.
    other = signed(strike=130_000)
    moved = Listing(good.terms, other.signatures)
    assert code_of(moved.entry()) == "bad_listing_signature"


def test_another_chain_id_is_refused() -> None:
    assert code_of(signed(chain=b"\x22" * 32).entry()) == "bad_listing_signature"


def test_a_non_member_key_is_refused() -> None:
    outsider = Ed25519Signer(b"\x99" * 32)
    terms = terms_of(table())
    sigs = {m: sign_terms(SIGNERS[m], CHAIN, terms) for m in (0, 1)}
    sigs[2] = sign_terms(outsider, CHAIN, terms)  # under a member's index
    assert code_of(make_listing(table(), sigs).entry()) == "bad_listing_signature"
    sigs = {m: sign_terms(SIGNERS[m], CHAIN, terms) for m in (0, 1, 2)}
    sigs[4] = sign_terms(outsider, CHAIN, terms)  # an index past the committee
    assert code_of(make_listing(table(), sigs).entry()) == "bad_listing_signature"


@pytest.mark.parametrize(
    "over",
    [
        {"right": "straddle"},
        {"strike": 0},
        {"symbol": ""},
        {"symbol": "X" * 33},
        {"vol_e9": 10**11},
        {"maker_fee_bps": 1_001},
        {"strike": "1"},
        {"right": 1},
        {"strike": True},
        {"expiry_ms": 1 << 64},
    ],
)
def test_malformed_terms_are_refused(over: dict[str, Any]) -> None:
    with pytest.raises(BadListing) as caught:
        terms_of(table(**over))
    assert caught.value.code == "malformed_listing"


def test_missing_or_extra_terms_are_refused() -> None:
    for bad in ({k: v for k, v in table().items() if k != "strike"}, {**table(), "kind": "x"}):
        with pytest.raises(BadListing):
            terms_of(bad)


def test_non_canonical_oversized_and_foreign_entries_are_refused() -> None:
    good = signed().entry()
    body = msgpack.unpackb(good[1:], raw=False)
    loose = bytes([TAG_LISTING]) + msgpack.packb(body, use_bin_type=False)  # str, not bin
    assert code_of(loose) == "malformed_listing"
    assert code_of(good + b"\x00") == "malformed_listing"
    assert code_of(bytes([0x04]) + good[1:]) == "malformed_listing"
    assert code_of(b"") == "malformed_listing"
    huge = bytes([TAG_LISTING]) + bytes(MAX_LISTING_BYTES)
    assert code_of(huge) == "listing_too_large"
    no_sigs = Listing(signed().terms, ())
    assert code_of(no_sigs.entry()) == "malformed_listing"


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_bad_listing(data: bytes) -> None:
    for entry in (data, bytes([TAG_LISTING]) + data):
        with contextlib.suppress(BadListing):
            decode_listing(entry)


def test_a_voter_checks_every_listing_of_a_block() -> None:
    good = signed().entry()
    other = signed(id=41, symbol="BTC-P").entry()
    intent = b"\x01" + b"x" * 10
    assert block_listings([good, other, intent], CHAIN, KEYS, QUORUM, SCHEME) is None
    assert block_listings([intent], CHAIN, KEYS, QUORUM, SCHEME) is None
    weak = signed((0, 1)).entry()
    assert "listing_quorum" in str(block_listings([good, weak], CHAIN, KEYS, QUORUM, SCHEME))
    many = [signed(id=50 + i, symbol=f"S{i}").entry() for i in range(MAX_BLOCK_LISTINGS + 1)]
    assert "at most" in str(block_listings(many, CHAIN, KEYS, QUORUM, SCHEME))


def test_the_pool_is_bounded_and_keyed_by_terms() -> None:
    pool = ListingPool()
    listing = signed()
    assert pool.offer(listing) is True
    assert pool.offer(signed((1, 2, 3))) is False  # the same terms, other signers
    assert len(pool) == 1
    assert pool.for_block(set()) == [listing.entry()]
    assert pool.for_block({listing.entry()}) == []  # carried by an ancestor
    for i in range(MAX_PENDING_LISTINGS - 1):
        pool.offer(signed(id=100 + i, symbol=f"S{i}"))
    assert len(pool.for_block(set())) == MAX_BLOCK_LISTINGS
    with pytest.raises(BadListing) as caught:
        pool.offer(signed(id=999, symbol="FULL"))
    assert caught.value.code == "listings_full"
    pool.committed(table())
    assert len(pool) == MAX_PENDING_LISTINGS - 1
    pool.committed({"nonsense": 1})  # not a listing's terms: ignored
    assert pool.offer(signed(id=999, symbol="FULL"))


def test_protocol_vector() -> None:
    """docs/PROTOCOL.md §7.5: the §7.3 key signs as member 2, chain id 11 x 32."""
    signer = Ed25519Signer(bytes(range(32)))
    terms = terms_of(table())
    listing = make_listing(table(), {2: sign_terms(signer, CHAIN, terms)})
    assert listing.signing_bytes(CHAIN).hex() == VECTOR_SIGNED
    assert listing.entry().hex() == VECTOR_ENTRY
    assert Ed25519Scheme().verify(signer.public_key, listing.signing_bytes(CHAIN),
                                  listing.signatures[0][1])  # fmt: skip


VECTOR_SIGNED = (
    "93b57365716e65742f6c6973742d7365726965732f7631c420"
    + "11" * 32
    + "9c28b44254432d32374a554e32372d3132303030302d4307ce0001d4c0cf000001a672aae000"
    "a463616c6c01ce23c3460001010205"
)
VECTOR_ENTRY = (
    "08929c28b44254432d32374a554e32372d3132303030302d4307ce0001d4c0cf000001a672aae000"
    "a463616c6c01ce23c3460001010205919202c440"
    "c6451c5ca2fc3e00ac0445d18e1c38528c0d4b67e6d7819aa064daeec10352d8"
    "969cf825d11f24265e1952804b47c0f6e323e4305a9342a24439613fea2a0c0a"
)


def test_the_peer_message_l_carries_a_decoded_listing() -> None:
    from node.net.messages import ForwardedListing, PeerProtocolError, decode_peer_message

    listing = signed()
    assert decode_peer_message(["l", listing.entry()]) == ForwardedListing(listing)
    for bad in (b"", listing.entry() + b"\x00", bytes([TAG_LISTING]) + bytes(MAX_LISTING_BYTES)):
        with pytest.raises(PeerProtocolError):
            decode_peer_message(["l", bad])
    with pytest.raises(PeerProtocolError):
        decode_peer_message(["l", listing.entry(), 1])
