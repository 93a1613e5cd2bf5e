"""Helpers for tests that run committee members: free ports, signed sample intents."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import count
from typing import Any

from node.intents import Domain, SignedIntent, address_of_private_key, place_action, sign_intent

_nonces = count(time.time_ns() // 1_000_000)


def trader_key(i: int) -> bytes:
    return (0x1000 + i).to_bytes(32, "big")


def place(
    key: bytes,
    domain: Domain,
    price: int = 3_000_000,
    size: int = 10**6,
    side: str = "buy",
    nonce: int | None = None,
) -> SignedIntent:
    action = place_action(0, side, price, size)
    account = address_of_private_key(key)
    return sign_intent(key, account, next(_nonces) if nonce is None else nonce, action, domain)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    """Poll `predicate` (a blocking check against real processes) until it returns
    something truthy, which is returned; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")
