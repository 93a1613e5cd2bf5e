"""Accounts (balances, open orders, agents) and per-signer replay protection.

Balances are per asset *index* (the asset's position in the genesis, dense), in engine
units: `available` can be spent or locked, `locked` is held by resting orders. An
account's total (available + locked) is what its state-tree leaf commits to.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matching.book import Order

MAX_OPEN_ORDERS = 1_000  # per account
MAX_AGENTS = 16  # per account

# Replay protection (Hyperliquid style): a nonce is a millisecond timestamp; the highest
# NONCE_SET_SIZE nonces of each (account, signer) are kept. A nonce is accepted if it is in
# [block_ts - NONCE_PAST_MS, block_ts + NONCE_FUTURE_MS], is not among the kept ones,
# and, once the set is full, is greater than the smallest kept one.
NONCE_SET_SIZE = 100
NONCE_PAST_MS = 2 * 24 * 3600 * 1000
NONCE_FUTURE_MS = 1 * 24 * 3600 * 1000


class Account:
    __slots__ = (
        "address",
        "agent_nonces",
        "agents",
        "available",
        "cloids",
        "leaf",
        "locked",
        "nonces",
        "orders",
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
        # Kept nonces (ascending) of the account's own signatures and of each agent's.
        # On the account: no global table lookup per entry. In a u64 array: no int object
        # per kept nonce (a million small objects pinned all over the heap otherwise).
        self.nonces: array[int] = array("Q")
        self.agent_nonces: dict[bytes, array[int]] = {}


def use_nonce(kept: array[int], nonce: int, low: int, high: int) -> str | None:
    """Record `nonce` in a signer's kept list and return None, or return why not."""
    if not low <= nonce <= high:
        return "nonce_out_of_window"
    if not kept or nonce > kept[-1]:  # the usual case: a signer's nonces mostly increase
        kept.append(nonce)
    else:
        i = bisect_left(kept, nonce)
        if kept[i] == nonce:
            return "nonce_reused"
        if i == 0 and len(kept) >= NONCE_SET_SIZE:
            return "nonce_too_old"
        kept.insert(i, nonce)
    if len(kept) > NONCE_SET_SIZE:
        del kept[0]
    return None
