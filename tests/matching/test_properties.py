"""Random streams against the engine's invariants (hypothesis stateful testing).

After every block: each asset is conserved (balances of all accounts, fee account
included, equal deposits minus withdrawals), every locked balance is exactly what the
account's open orders reserve, the book is never crossed at rest and its indexes agree.
At the end: snapshot/restore continues identically, and replaying the log from genesis
reproduces every event and every checkpoint root. Agents are approved and revoked along
the way, and entries are signed by them (approved, revoked or never approved).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from matching.engine import BlockResult, Engine
from matching.events import Deposited, Withdrawn
from node.bench.matching import Generator
from tests.matching.helpers import (
    ALICE,
    BOB,
    BTC,
    BTC_USDC,
    CAROL,
    ETH,
    ETH_USDC,
    T0,
    USDC,
    genesis,
)

TRADERS = (ALICE, BOB, CAROL, bytes([4]) * 20, bytes([5]) * 20)
AGENTS = (bytes([0xA1]) * 20, bytes([0xA2]) * 20, bytes([0xA3]) * 20)
SLOW = os.environ.get("SEQNET_SLOW") == "1"

prices = {ETH_USDC: st.integers(195, 205).map(lambda t: 5 * t), BTC_USDC: st.integers(50, 60)}
sizes = {ETH_USDC: st.integers(1, 12).map(lambda n: 10 * n), BTC_USDC: st.integers(1, 12)}


@st.composite
def actions(draw: st.DrawFn) -> dict[str, Any]:
    market = draw(st.sampled_from((ETH_USDC, BTC_USDC)))
    price = draw(prices[market]) if draw(st.integers(0, 19)) else draw(st.sampled_from((0, 1001)))
    size = draw(sizes[market])
    kind = draw(st.sampled_from(("place",) * 6 + ("cancel", "cancel_cloid", "cancel_all",
                                                  "modify", "modify", "withdraw")))  # fmt: skip
    if kind == "place":
        order_kind = draw(st.sampled_from(("limit", "limit", "limit", "market")))
        tifs = ("gtc", "ioc", "fok", "post") if order_kind == "limit" else ("ioc", "fok")
        return {
            "type": "place", "market": market, "side": draw(st.sampled_from(("buy", "sell"))),
            "kind": order_kind, "price": price, "size": size, "tif": draw(st.sampled_from(tifs)),
            "reduce_only": False, "cloid": draw(st.none() | st.integers(1, 4)),
            # made absolute in `block`: an offset from the block time (0: already expired)
            "expires_ms": draw(st.none() | st.none() | st.integers(0, 2_000)),
        }  # fmt: skip
    # oid -k stands for the account's k-th open order, resolved in `block`
    oid = draw(st.integers(-6, -1) | st.integers(1, 40))
    if kind == "cancel":
        return {"type": "cancel", "market": market, "oid": oid}
    if kind == "cancel_cloid":
        return {"type": "cancel_cloid", "market": market, "cloid": draw(st.integers(1, 4))}
    if kind == "cancel_all":
        return {"type": "cancel_all", "market": draw(st.none() | st.just(market))}
    if kind == "modify":
        return {"type": "modify", "market": market, "oid": oid, "price": price, "size": size}
    return {"type": "withdraw", "asset": draw(st.sampled_from((USDC, ETH, BTC))),
            "amount": draw(st.integers(1, 5_000))}  # fmt: skip


def check_invariants(engine: Engine, deposited: list[int], withdrawn: list[int]) -> None:
    """Conservation, reservations, book consistency (see the module docstring)."""
    accounts = engine.accounts.values()
    for i in range(len(engine.assets)):
        total = sum(a.available[i] + a.locked[i] for a in accounts)
        assert total == deposited[i] - withdrawn[i]
        assert all(a.available[i] >= 0 for a in accounts)
    resting = set()
    for account in accounts:
        reserved = [0] * len(engine.assets)
        for order in account.orders.values():
            book = order.book
            want = book.reserve(order.price, order.size) if order.is_buy else order.size
            assert order.reserved == want and order.size > 0 and order.live
            reserved[book.quote if order.is_buy else book.base] += order.reserved
            resting.add(order.oid)
        assert reserved == account.locked
    seen: set[int] = set()
    for book in engine.books.values():
        assert not book.crossed()
        for side in (book.bids, book.asks):
            assert side.keys == sorted(side.levels) and len(side.keys) == len(set(side.keys))
            for key in side.keys:
                level = side.levels[key]
                live = list(level)
                assert len(live) == level.live > 0
                assert all(o.price == level.price and o.key == key for o in live)
                seen.update(o.oid for o in live)
    assert seen == resting


def flows(events: list[Any], engine: Engine, deposited: list[int], withdrawn: list[int]) -> None:
    for e in events:
        if isinstance(e, Deposited):
            deposited[engine.asset_index[e.asset]] += e.amount
        elif isinstance(e, Withdrawn):
            withdrawn[engine.asset_index[e.asset]] += e.amount


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(genesis())
        self.ts = T0
        self.nonce = T0
        self.deposit_id = 0
        self.deposited = [0, 0, 0]
        self.withdrawn = [0, 0, 0]
        # The log: ("block", ts, entries) or ("checkpoint",); and what each step produced.
        self.log: list[tuple[Any, ...]] = []
        self.outputs: list[Any] = []

    def _apply(self, entries: list[dict[str, Any]], advance_ms: int) -> None:
        self.ts += advance_ms
        result = self.engine.apply_block(self.ts, entries)
        self.log.append(("block", self.ts, entries))
        self.outputs.append((result.expired, result.events))
        for events in result.events:
            flows(events, self.engine, self.deposited, self.withdrawn)

    @initialize()
    def fund(self) -> None:
        for who in TRADERS:
            for asset in (USDC, ETH, BTC):
                self.deposit(who, asset, 300_000)

    @rule(
        who=st.sampled_from(TRADERS),
        asset=st.sampled_from((USDC, ETH, BTC)),
        amount=st.integers(0, 200_000),
    )
    def deposit(self, who: bytes, asset: int, amount: int) -> None:
        self.deposit_id += 1
        action = {"type": "deposit", "deposit_id": self.deposit_id, "account": who,
                  "asset": asset, "amount": amount}  # fmt: skip
        self._apply([{"action": action}], 1)

    @rule(
        who=st.sampled_from(TRADERS),
        agent=st.sampled_from(AGENTS),
        approve=st.booleans(),
        advance_ms=st.integers(0, 400),
    )
    def agent(self, who: bytes, agent: bytes, approve: bool, advance_ms: int) -> None:
        action: dict[str, Any] = {"type": "revoke_agent", "agent": agent}
        if approve:
            action = {"type": "approve_agent", "agent": agent, "name": "bot"}
        self.nonce += 1
        entry = {"account": who, "signer": who, "nonce": self.nonce, "action": action}
        self._apply([entry], advance_ms)

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(TRADERS),
                actions(),
                st.integers(0, 15).map(lambda n: n == 0),
                st.sampled_from((None,) * 5 + AGENTS),
            ),
            max_size=10,
        ),
        advance_ms=st.integers(0, 400),
    )
    def block(
        self, batch: list[tuple[bytes, dict[str, Any], bool, bytes | None]], advance_ms: int
    ) -> None:
        entries = []
        for who, action, replay, agent in batch:
            if action.get("oid", 0) < 0:
                account = self.engine.accounts.get(who)
                mine = [o for o in account.orders.values()] if account else []
                if mine:
                    order = mine[-action["oid"] % len(mine)]
                    action = {**action, "oid": order.oid, "market": order.book.id}
            if action.get("expires_ms") is not None:
                action = {**action, "expires_ms": self.ts + advance_ms + action["expires_ms"]}
            if not replay:
                self.nonce += 1
            signer = agent or who
            entries.append(
                {"account": who, "signer": signer, "nonce": self.nonce, "action": action}
            )
        self._apply(entries, advance_ms)

    @precondition(lambda self: len(self.log) > 0)
    @rule()
    def checkpoint(self) -> None:
        checkpoint = self.engine.checkpoint()
        self.log.append(("checkpoint",))
        self.outputs.append(checkpoint)

    @invariant()
    def invariants_hold(self) -> None:
        check_invariants(self.engine, self.deposited, self.withdrawn)

    def teardown(self) -> None:
        self._check_snapshot_restore()
        self._check_replay()

    def _check_snapshot_restore(self) -> None:
        data = self.engine.snapshot()
        copy = Engine.restore(data)
        assert copy.snapshot() == data
        probe = [
            {"account": who, "signer": signer, "nonce": self.nonce + 1 + i,
             "action": {"type": "cancel_all", "market": None}}
            for i, (who, signer) in enumerate(
                [(who, who) for who in TRADERS] + [(ALICE, agent) for agent in AGENTS]
            )
        ]  # fmt: skip
        ts = self.ts + 5_000  # also expires what is due
        assert copy.apply_block(ts, probe) == self.engine.apply_block(ts, probe)
        assert copy.checkpoint() == self.engine.checkpoint()
        assert copy.digest() == self.engine.digest()

    def _check_replay(self) -> None:
        replica = Engine(genesis())
        outputs: list[Any] = []
        for step in self.log:
            if step[0] == "block":
                result = replica.apply_block(step[1], step[2])
                outputs.append((result.expired, result.events))
            else:
                outputs.append(replica.checkpoint())
        # the originals were mutated by the probe block above; compare up to it
        assert outputs == self.outputs


EngineMachine.TestCase.settings = settings(
    max_examples=500 if SLOW else 60,
    stateful_step_count=60 if SLOW else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineProperties = EngineMachine.TestCase


class CheckedGenerator(Generator):
    """The benchmark's stream generator (all order types, agents, crossing flow), with
    the invariants checked after every block of its shadow engine."""

    def __init__(self, seed: int, accounts: int, block_entries: int) -> None:
        super().__init__(seed, accounts, block_entries)
        self.deposited = [0] * len(self.genesis.assets)
        self.withdrawn = [0] * len(self.genesis.assets)
        self.blocks_checked = 0
        self.kinds: set[str] = set()

    def _shadow_apply(self, block: list[dict[str, Any]]) -> BlockResult:
        result = super()._shadow_apply(block)
        for events in result.events:
            flows(events, self.shadow, self.deposited, self.withdrawn)
            self.kinds.update(type(e).__name__ for e in events)
        self.kinds.update(type(e).__name__ for e in result.expired)
        check_invariants(self.shadow, self.deposited, self.withdrawn)
        self.blocks_checked += 1
        return result


def test_invariants_on_generated_streams() -> None:
    for seed in range(2):
        gen = CheckedGenerator(seed, accounts=30, block_entries=25)
        stream = gen.stream("mixed", 3_000, (0.5, 0.3), bursts=2)
        assert stream.entries > 2_500 and gen.blocks_checked > 80
        gen.ts += 30_000  # past every expiry
        gen._shadow_apply([])
        assert not gen.shadow.expiries
        assert {"Trade", "Fill", "Cancelled", "Modified", "Expired", "Rejected"} <= gen.kinds


@pytest.mark.slow
def test_invariants_on_a_long_generated_stream() -> None:
    gen = CheckedGenerator(11, accounts=200, block_entries=200)
    stream = gen.stream("mixed", 60_000, (0.55, 0.3), bursts=3)
    assert stream.entries > 45_000
    gen.ts += 30_000
    gen._shadow_apply([])
