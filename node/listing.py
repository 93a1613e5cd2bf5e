"""Committee listings: an option series created after genesis by the signatures of the
oracle quorum of members (payload tag 0x08; docs/PROTOCOL.md §7.5, docs/MATCHING.md
"Series by admin action").

The committee approves a series as it approves a price: each member's operator signs the
series' terms with the member's identity key (Ed25519, the key of its votes and its
observations), offline (`seqnet admin list-series sign`); anyone gathers the signatures
and hands the listing to a member (POST /v1/admin/listings), which forwards it to its
peers (peer message "l"); the next leader proposes it, every voter checks the signatures,
and the engine, trusting a committed listing as it trusts a committed observation, lists
the series or rejects it (matching/engine.py `_list_series`). The signatures are
collected off-chain so that no pending approval lives in the engine's state.

    terms  = [id, symbol, underlying, strike, expiry_ms, right, underlying_lots, vol_e9,
              tick_size, lot_size, maker_fee_bps, taker_fee_bps]      (matching SERIES_TERMS)
    signed = msgpack(["seqnet/list-series/v1", chain_id, terms])
    entry  = 0x08 ‖ msgpack([terms, [[member, signature], ...]])

`chain_id` is the genesis hash (as for observations and consensus messages), `member` a
member's index in genesis, members strictly ascending (so none twice), every signature
valid and at least the quorum of them. The entry is canonical: decoding and encoding it
again gives the same bytes.

It may not touch: the engine (it only builds its entry), I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from consensus.crypto import SIGNATURE_LEN, SignatureScheme, Signer
from matching.config import SERIES_TERMS, SYMBOL_MAX_BYTES, ConfigError, listed_series

TAG_LISTING: Final = 0x08
LISTING_TAG: Final = bytes((TAG_LISTING,))
DOMAIN_LISTING: Final = "seqnet/list-series/v1"
MAX_LISTING_MEMBERS: Final = 256  # signatures in one listing (a member index is < 256)
# Terms: 12 fields, each a u64 (9 bytes) or a symbol/right of at most 32 bytes (34).
MAX_TERMS_BYTES: Final = 16 + 10 * 9 + 2 * (2 + SYMBOL_MAX_BYTES)
MAX_LISTING_BYTES: Final = 1 + 8 + MAX_TERMS_BYTES + MAX_LISTING_MEMBERS * (5 + SIGNATURE_LEN)
MAX_PENDING_LISTINGS: Final = 16  # listings a member holds until they commit
MAX_BLOCK_LISTINGS: Final = 4  # listing entries in one block
_STRINGS: Final = frozenset(("symbol", "right"))


class BadListing(ValueError):
    """A listing that is not well formed or not signed by the quorum; `code` names why
    (the API's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Listing:
    terms: tuple[int | str, ...]  # in SERIES_TERMS order
    signatures: tuple[tuple[int, bytes], ...]  # (member, signature), members ascending

    @property
    def series_id(self) -> int:
        value = self.terms[0]
        assert type(value) is int
        return value

    def table(self) -> dict[str, int | str]:
        """The terms as the genesis table the engine takes (SERIES_TERMS keys)."""
        return dict(zip(SERIES_TERMS, self.terms, strict=True))

    def key(self) -> bytes:
        """What identifies the listing, whoever signed it: its terms' bytes."""
        return packed_terms(self.terms)

    def signing_bytes(self, chain_id: bytes) -> bytes:
        return signing_bytes(chain_id, self.terms)

    def entry(self) -> bytes:
        body = [list(self.terms), [[m, s] for m, s in self.signatures]]
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return LISTING_TAG + packed

    def engine_entry(self) -> dict[str, Any]:
        """The engine's committee entry (matching/engine.py `_list_series`): no account,
        signer or nonce."""
        return {"action": {"type": "list_series", "series": self.table()}}

    def verify(
        self,
        chain_id: bytes,
        public_keys: tuple[bytes, ...],
        quorum: int,
        scheme: SignatureScheme,
    ) -> None:
        """BadListing unless at least `quorum` distinct members signed and every
        signature it carries is a member's valid one."""
        if len(self.signatures) < quorum:
            raise BadListing(
                "listing_quorum",
                f"{len(self.signatures)} member signatures, the quorum is {quorum}",
            )
        message = self.signing_bytes(chain_id)
        for member, signature in self.signatures:
            if member >= len(public_keys):
                raise BadListing("bad_listing_signature", f"no member {member}")
            if not scheme.verify(public_keys[member], message, signature):
                raise BadListing("bad_listing_signature", f"member {member}: bad signature")


def packed_terms(terms: tuple[int | str, ...]) -> bytes:
    data: bytes = msgpack.packb(list(terms), use_bin_type=True)
    return data


def signing_bytes(chain_id: bytes, terms: tuple[int | str, ...]) -> bytes:
    data: bytes = msgpack.packb([DOMAIN_LISTING, chain_id, list(terms)], use_bin_type=True)
    return data


def terms_of(table: object) -> tuple[int | str, ...]:
    """The terms of a genesis-style table (exactly the SERIES_TERMS keys), checked as the
    engine checks them (any collateral: the engine fills in its own); BadListing if not."""
    if not isinstance(table, dict) or set(table) != set(SERIES_TERMS):
        raise BadListing("malformed_listing", f"terms need exactly {', '.join(SERIES_TERMS)}")
    for key in SERIES_TERMS:
        value = table[key]
        if (type(value) is str) != (key in _STRINGS) or type(value) not in (int, str):
            kind = "a string" if key in _STRINGS else "an integer"
            raise BadListing("malformed_listing", f"terms: {key} must be {kind}")
    try:
        listed_series(table, 0)
    except ConfigError as exc:
        raise BadListing("malformed_listing", str(exc)) from None
    terms = tuple(table[key] for key in SERIES_TERMS)
    if len(packed_terms(terms)) > MAX_TERMS_BYTES:  # unreachable with checked terms
        raise BadListing("listing_too_large", f"terms larger than {MAX_TERMS_BYTES} bytes")
    return terms


def sign_terms(signer: Signer, chain_id: bytes, terms: tuple[int | str, ...]) -> bytes:
    """A member's signature of the terms (what `seqnet admin list-series sign` prints)."""
    return signer.sign(signing_bytes(chain_id, terms))


def make_listing(
    table: dict[str, Any], signatures: dict[int, bytes] | list[tuple[int, bytes]]
) -> Listing:
    """A listing of checked terms and member signatures (ordered here, ascending); a
    member given twice is refused (BadListing)."""
    pairs = list(signatures.items()) if isinstance(signatures, dict) else list(signatures)
    members = [m for m, _ in pairs]
    if len(set(members)) != len(members):
        raise BadListing("malformed_listing", "a member signed twice")
    listing = Listing(terms_of(table), tuple(sorted(pairs)))
    _check_signatures(listing.signatures)
    return listing


def _check_signatures(signatures: tuple[tuple[int, bytes], ...]) -> None:
    if not 0 < len(signatures) <= MAX_LISTING_MEMBERS:
        raise BadListing("malformed_listing", f"1..{MAX_LISTING_MEMBERS} signatures")
    last = -1
    for member, signature in signatures:
        if type(member) is not int or not last < member < MAX_LISTING_MEMBERS:
            raise BadListing(
                "malformed_listing", "signers must be distinct member indexes, ascending"
            )
        if type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
            raise BadListing("malformed_listing", f"a signature is {SIGNATURE_LEN} bytes")
        last = member


def decode_listing(entry: bytes) -> Listing:
    """The listing of a 0x08 entry, checked for size, shape, ranges and canonical bytes
    (not for its signatures: `Listing.verify`)."""
    if len(entry) > MAX_LISTING_BYTES:
        raise BadListing("listing_too_large", f"listing larger than {MAX_LISTING_BYTES} bytes")
    if entry[:1] != LISTING_TAG:
        raise BadListing("malformed_listing", f"not a listing: tag {entry[:1].hex() or 'empty'}")
    try:
        raw = msgpack.unpackb(entry[1:], raw=False, strict_map_key=True)
    except Exception as exc:  # any unpacking failure is the sender's malformed entry
        raise BadListing("malformed_listing", f"listing is not msgpack: {exc}") from None
    if not isinstance(raw, list) or len(raw) != 2:
        raise BadListing("malformed_listing", "a listing is [terms, signatures]")
    terms, signatures = raw
    if not isinstance(terms, list) or len(terms) != len(SERIES_TERMS):
        raise BadListing("malformed_listing", f"terms are {len(SERIES_TERMS)} fields")
    if not isinstance(signatures, list) or not all(
        isinstance(s, list) and len(s) == 2 for s in signatures
    ):
        raise BadListing("malformed_listing", "signatures are [member, signature] pairs")
    pairs = tuple((s[0], s[1]) for s in signatures)
    _check_signatures(pairs)
    listing = Listing(terms_of(dict(zip(SERIES_TERMS, terms, strict=True))), pairs)
    if listing.entry() != entry:
        raise BadListing("malformed_listing", "listing entry is not in canonical form")
    return listing


def check_listing(
    entry: bytes,
    chain_id: bytes,
    public_keys: tuple[bytes, ...],
    quorum: int,
    scheme: SignatureScheme,
) -> Listing:
    """Decode and verify a 0x08 entry; BadListing with its code if it fails."""
    listing = decode_listing(entry)
    listing.verify(chain_id, public_keys, quorum, scheme)
    return listing


def block_listings(
    entries: tuple[bytes, ...] | list[bytes],
    chain_id: bytes,
    public_keys: tuple[bytes, ...],
    quorum: int,
    scheme: SignatureScheme,
) -> str | None:
    """A voter's check of a proposal's listing entries (`entries` without the signers
    entry): at most MAX_BLOCK_LISTINGS, each well formed and signed by the quorum. None
    when so, else why not."""
    found = [e for e in entries if e[:1] == LISTING_TAG]
    if len(found) > MAX_BLOCK_LISTINGS:
        return f"{len(found)} listings in one block (at most {MAX_BLOCK_LISTINGS})"
    for entry in found:
        try:
            check_listing(entry, chain_id, public_keys, quorum, scheme)
        except BadListing as exc:
            return f"listing: {exc.code}: {exc}"
    return None


def engine_table(action: dict[str, Any]) -> dict[str, Any] | None:
    """The terms of a committed `list_series` engine entry's action (else None)."""
    if action.get("type") != "list_series":
        return None
    series = action.get("series")
    return series if isinstance(series, dict) else None


class ListingPool:
    """The listings a member took (checked, from a client or a peer) and proposes when it
    leads, until a block carrying one commits; at most MAX_PENDING_LISTINGS, one per
    terms."""

    def __init__(self, limit: int = MAX_PENDING_LISTINGS) -> None:
        self.limit = limit
        self._pending: OrderedDict[bytes, bytes] = OrderedDict()  # terms bytes -> entry

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, listing: Listing) -> bool:
        """Keep a checked listing; False if the same terms are already pending (a
        resubmission: idempotent). BadListing `listings_full` when full."""
        key = listing.key()
        if key in self._pending:
            return False
        if len(self._pending) >= self.limit:
            raise BadListing("listings_full", f"{self.limit} listings pending already")
        self._pending[key] = listing.entry()
        return True

    def for_block(self, exclude: set[bytes] | frozenset[bytes]) -> list[bytes]:
        """Pending entries not carried by an uncommitted ancestor (`exclude`: entries)."""
        return [e for e in self._pending.values() if e not in exclude][:MAX_BLOCK_LISTINGS]

    def committed(self, table: dict[str, Any]) -> None:
        """A block carrying a listing of these terms committed (listed or rejected: it
        is not proposed again)."""
        try:
            key = packed_terms(tuple(table[k] for k in SERIES_TERMS))
        except KeyError:
            return
        self._pending.pop(key, None)
