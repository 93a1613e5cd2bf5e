"""Signed committee observations: what a member's oracle feeder says, as a payload entry.

Two kinds, one format: price observations (tag 0x04, a perp market's price in ticks) and
implied-vol observations (tag 0x06, an option series' vol in 1e-9 units, vol_e9; the
engine's `vols` entry, matching/optionmarkets.py). Each kind has its own tag, signing
domain and value range; a member sends each kind at most once per interval.

Each member signs its own observations with its committee identity key (Ed25519) and
sends them to its peers; a leader puts the latest one of each member in its block
(PROTOCOL.md §7.3). A voter votes for a block only if every observation in it is signed
by the member it names, is that member's only one in the block, and was made within
OBSERVATION_SKEW_MS of the block's timestamp: an old observation cannot be replayed to
keep a price fresh, and the engine (matching/oracle.py) takes the block's timestamp as
the observation's time, so a member cannot claim one.

    entry = tag ‖ msgpack([member, observed_ms, [[market, value], ...], signature])
    signed = msgpack([domain, chain_id, member, observed_ms, [[market, value], ...]])

`member` is the member's index in genesis, `value` a market's price in ticks (the
engine's unit for that market) or a series' vol_e9, markets ascending and distinct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from consensus.crypto import SIGNATURE_LEN, SignatureScheme, Signer
from matching.options import MAX_VOL_E9

TAG_ORACLE: Final = 0x04
TAG_VOLS: Final = 0x06
DOMAIN_ORACLE: Final = "seqnet/oracle/v1"
DOMAIN_VOLS: Final = "seqnet/vols/v1"
MAX_OBSERVED_MARKETS: Final = 64
MAX_PRICE: Final = (1 << 63) - 1
MAX_MARKET_ID: Final = (1 << 32) - 1
MAX_MEMBERS: Final = 256
OBSERVATION_SKEW_MS: Final = 10_000  # |observed_ms - block timestamp| a voter accepts
MAX_OBSERVATION_BYTES: Final = 64 + 20 * MAX_OBSERVED_MARKETS + SIGNATURE_LEN


class BadObservation(ValueError):
    """An observation entry that is not well formed (the peer or leader that sent it is
    at fault)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """What an observation observes: its payload tag, signing domain, the range of its
    values and the engine entry it becomes."""

    tag: int
    domain: str
    what: str  # "price" | "vol", for messages
    max_value: int
    engine_type: str  # the engine's action type
    engine_field: str  # the action's list of [market, value]


PRICES: Final = Kind(TAG_ORACLE, DOMAIN_ORACLE, "price", MAX_PRICE, "oracle", "prices")
VOLS: Final = Kind(TAG_VOLS, DOMAIN_VOLS, "vol", MAX_VOL_E9, "vols", "vols")
KINDS: Final = {TAG_ORACLE: PRICES, TAG_VOLS: VOLS}
OBSERVATION_TAGS: Final = (bytes((TAG_ORACLE,)), bytes((TAG_VOLS,)))


@dataclass(frozen=True, slots=True)
class Observation:
    member: int
    observed_ms: int
    prices: tuple[tuple[int, int], ...]  # (market id, value), markets ascending
    signature: bytes
    kind: Kind = PRICES

    def signing_bytes(self, chain_id: bytes) -> bytes:
        return signing_bytes(chain_id, self.member, self.observed_ms, self.prices, self.kind)

    def entry(self) -> bytes:
        body = [self.member, self.observed_ms, [list(p) for p in self.prices], self.signature]
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return bytes((self.kind.tag,)) + packed

    def verify(self, chain_id: bytes, public_key: bytes, scheme: SignatureScheme) -> bool:
        return scheme.verify(public_key, self.signing_bytes(chain_id), self.signature)

    def engine_entry(self, member_address: bytes) -> dict[str, Any]:
        """The engine's entry (matching/oracle.py `oracle`, matching/optionmarkets.py
        `vols`): no account, signer or nonce."""
        kind = self.kind
        return {
            "action": {
                "type": kind.engine_type,
                "member": member_address,
                kind.engine_field: [list(p) for p in self.prices],
            }
        }


def signing_bytes(
    chain_id: bytes,
    member: int,
    observed_ms: int,
    prices: tuple[tuple[int, int], ...],
    kind: Kind = PRICES,
) -> bytes:
    data: bytes = msgpack.packb(
        [kind.domain, chain_id, member, observed_ms, [list(p) for p in prices]],
        use_bin_type=True,
    )
    return data


def sign_observation(
    signer: Signer,
    chain_id: bytes,
    member: int,
    observed_ms: int,
    prices: dict[int, int],
    kind: Kind = PRICES,
) -> Observation:
    ordered = tuple(sorted(prices.items()))
    _check_prices(ordered, kind)
    signature = signer.sign(signing_bytes(chain_id, member, observed_ms, ordered, kind))
    return Observation(member, observed_ms, ordered, signature, kind)


def _check_prices(prices: tuple[tuple[int, int], ...], kind: Kind) -> None:
    what = kind.what
    if not 0 < len(prices) <= MAX_OBSERVED_MARKETS:
        raise BadObservation(f"an observation holds 1..{MAX_OBSERVED_MARKETS} {what}s")
    last = -1
    for market, price in prices:
        if type(market) is not int or not last < market <= MAX_MARKET_ID:
            raise BadObservation("observation markets must be ascending, distinct u32 ids")
        if type(price) is not int or not 0 < price <= kind.max_value:
            raise BadObservation(f"observation {what} {price!r} is not in 1..{kind.max_value}")
        last = market


def decode_observation(entry: bytes) -> Observation:
    """The observation of a 0x04 (price) or 0x06 (vol) entry, checked for shape, ranges
    and canonical bytes (not for its signature: `Observation.verify`)."""
    if len(entry) > MAX_OBSERVATION_BYTES:
        raise BadObservation(f"observation entry larger than {MAX_OBSERVATION_BYTES} bytes")
    kind = KINDS.get(entry[0]) if entry else None
    if kind is None:
        raise BadObservation(f"not an observation entry: tag {entry[:1].hex() or 'empty'}")
    try:
        raw = msgpack.unpackb(entry[1:], raw=False, strict_map_key=True)
    except Exception as exc:  # any unpacking failure is the sender's malformed entry
        raise BadObservation(f"observation entry is not msgpack: {exc}") from None
    if not isinstance(raw, list) or len(raw) != 4:
        raise BadObservation("an observation is a list of 4 fields")
    member, observed_ms, prices, signature = raw
    if type(member) is not int or not 0 <= member < MAX_MEMBERS:
        raise BadObservation("observation member must be a member index")
    if type(observed_ms) is not int or not 0 <= observed_ms < 1 << 63:
        raise BadObservation("observation time must be a non-negative int64 (ms)")
    if type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
        raise BadObservation(f"observation signature must be {SIGNATURE_LEN} bytes")
    if not isinstance(prices, list) or not 0 < len(prices) <= MAX_OBSERVED_MARKETS:
        raise BadObservation(f"an observation holds 1..{MAX_OBSERVED_MARKETS} prices")
    if not all(isinstance(p, list) and len(p) == 2 for p in prices):
        raise BadObservation("observation prices must be [market, price] pairs")
    ordered = tuple((p[0], p[1]) for p in prices)
    _check_prices(ordered, kind)
    observation = Observation(member, observed_ms, ordered, signature, kind)
    if observation.entry() != entry:
        raise BadObservation("observation entry is not in canonical form")
    return observation


def block_observations(
    entries: tuple[bytes, ...] | list[bytes],
    timestamp_ms: int,
    public_keys: tuple[bytes, ...],
    chain_id: bytes,
    scheme: SignatureScheme,
) -> str | None:
    """A voter's check of a proposal's observation entries (`entries` without the
    signers entry): they come first, at most one of each kind per member, each well
    formed, signed by the member it names and made within OBSERVATION_SKEW_MS of the
    block's timestamp. None when so, else why not."""
    seen: set[tuple[int, int]] = set()
    for i, entry in enumerate(entries):
        if entry[:1] not in OBSERVATION_TAGS:
            if any(e[:1] in OBSERVATION_TAGS for e in entries[i:]):
                return "observation entries must come first in a block"
            return None
        try:
            observation = decode_observation(entry)
        except BadObservation as exc:
            return str(exc)
        member = observation.member
        if member >= len(public_keys):
            return f"observation of member {member}: no such member"
        key = (observation.kind.tag, member)
        if key in seen:
            what = observation.kind.what
            return f"two observations of member {member} in one block ({what}s)"
        seen.add(key)
        if abs(observation.observed_ms - timestamp_ms) > OBSERVATION_SKEW_MS:
            return (
                f"observation of member {member} made at {observation.observed_ms}, "
                f"more than {OBSERVATION_SKEW_MS} ms from the block's {timestamp_ms}"
            )
        if not observation.verify(chain_id, public_keys[member], scheme):
            return f"observation of member {member}: bad signature"
    return None
