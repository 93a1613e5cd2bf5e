"""Accounts (balances, open orders, agents) and per-signer replay protection.

Balances are per asset *index* (the asset's position in the genesis, dense), in engine
units: `available` can be spent or locked, `locked` is held by resting orders. An
account's total (available + locked) is what its state-tree leaf commits to.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from matching.book import Order
    from matching.margin import PerpAccount

MAX_OPEN_ORDERS: Final = 1_000  # per account
MAX_AGENTS: Final = 16  # per account
# Agent keys whose nonces an account keeps: the approved ones, and revoked ones until
# their last nonce leaves the replay window (a re-approved key must not replay).
MAX_AGENT_KEYS: Final = 64

# Replay protection (Hyperliquid style): a nonce is a millisecond timestamp; the highest
# NONCE_SET_SIZE nonces of each (account, signer) are kept. A nonce is accepted if it is in
# [block_ts - NONCE_PAST_MS, block_ts + NONCE_FUTURE_MS], is not among the kept ones,
# and, once the set is full, is greater than the smallest kept one.
NONCE_SET_SIZE: Final = 100
NONCE_PAST_MS: Final = 2 * 24 * 3600 * 1000
NONCE_FUTURE_MS: Final = 1 * 24 * 3600 * 1000
# A signer's array holds its kept nonces at its end, after up to NONCE_SLACK older ones
# that no longer count: trimming 32 at a time instead of one per entry saves moving the
# whole array (800 bytes, often cold) on every entry.
NONCE_SLACK: Final = 32


class Account:
    __slots__ = (
        "address",
        "agent_nonces",
        "agents",
        "available",
        "cloids",
        "leaf",
        "locked",
        "orders",
        "perp",
        "raw_nonces",
    )

    def __init__(self, address: bytes, asset_count: int) -> None:
        self.address = address
        self.available = [0] * asset_count
        self.locked = [0] * asset_count
        # State-tree leaf index per asset, -1 until the pair is first credited.
        self.leaf = [-1] * asset_count
        self.orders: dict[int, Order] = {}  # oid -> open order, in acceptance order
        self.cloids: dict[int, Order] = {}  # client order id -> open order
        self.agents: dict[bytes, str] = {}  # approved agent address -> name
        # Nonces (ascending) of the account's own signatures and of each agent's; the
        # kept ones are the last NONCE_SET_SIZE (see NONCE_SLACK, `kept`). On the account:
        # no global table lookup per entry. In a u64 array: no int object per kept nonce
        # (a million small objects pinned all over the heap otherwise).
        self.raw_nonces: array[int] = array("Q")
        self.agent_nonces: dict[bytes, array[int]] = {}  # agent -> raw array, as above
        self.perp: PerpAccount | None = None  # positions, once the account trades perps

    @property
    def nonces(self) -> array[int]:
        """The kept nonces of the account's own signatures (a copy)."""
        return kept(self.raw_nonces)


def kept(raw: array[int]) -> array[int]:
    """The kept nonces of a raw nonce array (a copy): its last NONCE_SET_SIZE."""
    return raw[-NONCE_SET_SIZE:]


def use_nonce(raw: array[int], nonce: int, low: int, high: int) -> str | None:
    """Record `nonce` in a signer's raw nonce array and return None, or return why not.
    Only the last NONCE_SET_SIZE entries of `raw` count (the kept set)."""
    if not low <= nonce <= high:
        return "nonce_out_of_window"
    if not raw or nonce > raw[-1]:  # the usual case: a signer's nonces mostly increase
        raw.append(nonce)
    else:
        n = len(raw)
        start = n - NONCE_SET_SIZE if n > NONCE_SET_SIZE else 0  # the first kept one
        i = bisect_left(raw, nonce, start)
        if raw[i] == nonce:
            return "nonce_reused"
        if i == start and n - start >= NONCE_SET_SIZE:
            return "nonce_too_old"
        raw.insert(i, nonce)
    if len(raw) > NONCE_SET_SIZE + NONCE_SLACK:
        del raw[:-NONCE_SET_SIZE]
    return None
