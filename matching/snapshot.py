"""Snapshot and restore of the whole engine state, as msgpack bytes.

The snapshot is canonical: restoring it and snapshotting again gives the same bytes, and
a restored engine produces the same events and roots as the original for any further
input. Everything whose order can be observed is written in that order: accounts, each
account's orders in acceptance order (cancel-all reports in that order), each price
level's queue front to back, the kept nonces. Dead orders still sitting in level queues
are not written (they are invisible). Integers that may exceed 64 bits (balances, chain
amounts) are written as decimal strings when they do, never as msgpack ints.
"""

from __future__ import annotations

from array import array
from typing import Any

import msgpack

from matching.accounts import Account, kept
from matching.book import Order
from matching.checkpoint import Checkpoint, Withdrawal
from matching.config import U64_MAX, Genesis
from matching.engine import Engine
from matching.margin import PerpAccount, Position
from matching.merkle import MerkleTree, balance_leaf
from matching.optionmarkets import Holding, OptionAccount

VERSION = 1


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this engine can restore."""


def _int_out(value: int) -> int | str:
    return value if -(1 << 63) <= value <= U64_MAX else str(value)


def _int_in(value: int | str) -> int:
    return int(value) if isinstance(value, str) else value


def _ints_out(values: list[int]) -> list[int | str]:
    return [_int_out(v) for v in values]


def _ints_in(values: list[int | str]) -> list[int]:
    return [_int_in(v) for v in values]


def dump(engine: Engine) -> bytes:
    accounts = [
        [
            a.address,
            _ints_out(a.available),
            _ints_out(a.locked),
            a.leaf,
            list(a.agents.items()),
            kept(a.raw_nonces).tolist(),
            [[signer, kept(raw).tolist()] for signer, raw in a.agent_nonces.items()],
        ]
        for a in engine.accounts.values()
    ]
    orders = [
        [o.oid, o.account.address, o.book.id, o.is_buy, o.price, o.size, _int_out(o.reserved),
         o.cloid, o.expires_ms, o.post_only]
        for a in engine.accounts.values()
        for o in a.orders.values()
    ]  # fmt: skip
    queues = [
        [book.id, *[[[lv.price, [o.oid for o in lv]] for lv in side.best_first()]
                    for side in (book.bids, book.asks)]]
        for book in engine.books.values()
    ]  # fmt: skip
    state = engine.state
    checkpoints = [
        [c.sequence, c.state_root, c.withdrawals_root, c.last_deposit_id,
         [[w.withdrawal_id, w.account, w.token, _int_out(w.amount)] for w in c.withdrawals]]
        for c in engine.withdrawal_trees.checkpoints()
    ]  # fmt: skip
    body = {
        "version": VERSION,
        "genesis": engine.genesis.to_dict(),
        "timestamp_ms": engine.timestamp_ms,
        "next_oid": engine.next_oid,
        "next_trade_id": engine.next_trade_id,
        "next_withdrawal_id": engine.next_withdrawal_id,
        "last_deposit_id": engine.last_deposit_id,
        "sequence": engine.sequence,
        "accounts": accounts,
        "orders": orders,
        "queues": queues,
        "expiries": engine.expiries,
        "pairs": [[account.address, asset] for account, asset in state.pairs],
        "totals": _ints_out(state.totals),
        "hashed": len(state.tree),
        "dirty": [account.address for account in state.dirty],
        "pending_withdrawals": [
            [wid, address, asset, _int_out(amount)]
            for wid, address, asset, amount in engine.pending_withdrawals
        ],
        "checkpoints": checkpoints,
    }
    if engine.perps is not None:
        body["perp"] = _dump_perp(engine)
    if engine.auctions is not None:
        body["auction"] = _dump_auction(engine)
    if engine.options is not None:
        body["option"] = _dump_option(engine)
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def _dump_perp(engine: Engine) -> dict[str, Any]:
    """Perp state: market prices and funding accumulators, oracle observations, positions
    (in each account's first-use order), and the position leaves hashed at the last
    checkpoint. The liquidation index is not written: a restored engine rebuilds it, and
    no output depends on it (liquidation.py)."""
    perps = engine.perps
    assert perps is not None
    markets = [
        [m.id, m.index, m.mark, m.fresh, m.premium_ema, _int_out(m.premium_sum),
         m.premium_count, m.last_sample_ms, m.last_trade, m.next_funding_ms,
         _int_out(m.variation)]
        for m in perps.markets.values()
    ]  # fmt: skip
    oracle = [
        [market, [[member, price, ts] for member, (price, ts) in sorted(seen.items())]]
        for market, seen in perps.oracle.observations.items()
    ]
    positions = []
    for account in perps.accounts:
        pa = account.perp
        assert pa is not None
        rows = [
            [p.market.id, _int_out(p.size), _int_out(p.entry), _int_out(p.realized),
             _int_out(p.funding), p.isolated, _int_out(p.margin), p.leverage,
             _int_out(p.bid_size), _int_out(p.bid_notional), _int_out(p.ask_size),
             _int_out(p.ask_notional), p.leaf]
            for p in pa.positions.values()
        ]  # fmt: skip
        positions.append([account.address, rows])
    tree = engine.state.tree
    hashed = len(tree)
    leaves = [
        [index, tree.leaf(index)]
        for index, (_, kind) in enumerate(engine.state.pairs[:hashed])
        if kind < 0
    ]
    return {"markets": markets, "oracle": oracle, "positions": positions, "leaves": leaves}


def _dump_auction(engine: Engine) -> dict[str, Any]:
    """Batch auction state, written only when the genesis has auction markets (so other
    snapshots are unchanged): the block count that places batch boundaries, and per
    market the reference price and the IOC orders waiting for the clearing. The orders
    themselves are in the books like any resting order."""
    auctions = engine.auctions
    assert auctions is not None
    markets = [
        [m.book.id, m.last_price, [[oid, account.address] for oid, account in m.ioc.items()]]
        for m in auctions.markets.values()
    ]
    return {"height": auctions.height, "markets": markets}


def _load_auction(engine: Engine, auction: dict[str, Any]) -> None:
    auctions = engine.auctions
    assert auctions is not None
    auctions.height = auction["height"]
    for market_id, last_price, ioc in auction["markets"]:
        market = auctions.markets[market_id]
        market.last_price = last_price
        market.ioc = {oid: engine.accounts[address] for oid, address in ioc}


def _dump_option(engine: Engine) -> dict[str, Any]:
    """Option state: per series its price state and settlement samples, the committee's
    vol observations, and each account's margin mode and holdings (first-use order). Risk
    vectors are not written: a restored engine recomputes them from the inputs kept in
    `vector_at` and the underlying's mark (optionmarkets.py, `rebuild`)."""
    options = engine.options
    assert options is not None
    series = [
        [s.id, s.forward, s.committee_vol, s.vol, s.from_book, _int_out(s.mark_e18), s.mark,
         _int_out(s.twap_sum), s.twap_count, s.settled, s.settle_price, list(s.vector_at),
         s.vector is not None]
        for s in options.series.values()
    ]  # fmt: skip
    vols = [
        [market, [[member, vol, ts] for member, (vol, ts) in sorted(seen.items())]]
        for market, seen in options.vols.observations.items()
    ]
    accounts = [
        [account.address, oa.standard,
         [[m, _int_out(h.size), _int_out(h.premium), h.leaf] for m, h in oa.holdings.items()]]
        for account, oa in options.accounts.items()
    ]  # fmt: skip
    return {"series": series, "vols": vols, "accounts": accounts}


def _load_option(engine: Engine, option: dict[str, Any]) -> None:
    options = engine.options
    assert options is not None
    for row in option["series"]:
        s = options.series[row[0]]
        (s.forward, s.committee_vol, s.vol, s.from_book) = row[1:5]
        s.mark_e18 = _int_in(row[5])
        s.mark = row[6]
        s.twap_sum = _int_in(row[7])
        (s.twap_count, s.settled, s.settle_price) = row[8:11]
        at = row[11]
        s.vector_at = (at[0], at[1], at[2])
        if row[12]:
            options.revalue(s)
    for market, seen in option["vols"]:
        for member, vol, ts in seen:
            options.vols.observe(member, market, vol, ts)
    for address, standard, holdings in option["accounts"]:
        account = engine.accounts[address]
        oa = options.accounts[account] = OptionAccount()
        oa.standard = standard
        for market, size, premium, leaf in holdings:
            s = options.series[market]
            h = oa.holdings[market] = Holding(s)
            h.size, h.premium, h.leaf = _int_in(size), _int_in(premium), leaf
            if h.size:
                s.holders[account] = None
    for account, oa in options.accounts.items():
        for order in account.orders.values():
            found = options.series.get(order.book.id)
            if found is not None:
                oa.add_open(found.id, order.is_buy, order.size // found.lot, order.price)
    options.relinear()


def _load_perp(engine: Engine, perp: dict[str, Any]) -> dict[int, bytes]:
    perps = engine.perps
    assert perps is not None
    for row in perp["markets"]:
        m = perps.markets[row[0]]
        (m.index, m.mark, m.fresh, m.premium_ema, premium_sum, m.premium_count,
         m.last_sample_ms, m.last_trade, m.next_funding_ms, variation) = row[1:]  # fmt: skip
        m.premium_sum = _int_in(premium_sum)
        m.variation = _int_in(variation)
    for market, seen in perp["oracle"]:
        for member, price, ts in seen:
            perps.oracle.observe(member, market, price, ts)
    for address, rows in perp["positions"]:
        account = engine.accounts[address]
        pa = account.perp = PerpAccount()
        perps.accounts[account] = None
        for row in rows:
            market = perps.markets[row[0]]
            pos = pa.positions[market.id] = Position(market)
            (pos.size, pos.entry, pos.realized, pos.funding) = _ints_in(row[1:5])
            pos.isolated, pos.leverage, pos.leaf = row[5], row[7], row[12]
            pos.margin = _int_in(row[6])
            (pos.bid_size, pos.bid_notional, pos.ask_size, pos.ask_notional) = _ints_in(row[8:12])
            if pos.size:
                market.holders[account] = None
    return {index: leaf for index, leaf in perp["leaves"]}


def load(data: bytes) -> Engine:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise SnapshotError(f"not msgpack: {exc}") from exc
    if not isinstance(body, dict) or body.get("version") != VERSION:
        raise SnapshotError("not a version 1 matching snapshot")
    try:
        return _load(body)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc!r}") from exc


def _load(body: dict[str, Any]) -> Engine:
    engine = Engine(Genesis.from_dict(body["genesis"]))
    engine.timestamp_ms = body["timestamp_ms"]
    engine.next_oid = body["next_oid"]
    engine.next_trade_id = body["next_trade_id"]
    engine.next_withdrawal_id = body["next_withdrawal_id"]
    engine.last_deposit_id = body["last_deposit_id"]
    engine.sequence = body["sequence"]
    accounts = engine.accounts
    for address, available, locked, leaf, agents, nonces, agent_nonces in body["accounts"]:
        account: Account = engine._account(address)
        account.available = _ints_in(available)
        account.locked = _ints_in(locked)
        account.leaf = list(leaf)
        account.agents = {agent: name for agent, name in agents}
        account.raw_nonces = array("Q", nonces)
        account.agent_nonces = {signer: array("Q", raw) for signer, raw in agent_nonces}
    by_oid: dict[int, Order] = {}
    for oid, address, market, is_buy, price, size, reserved, cloid, expires_ms, post in body[
        "orders"
    ]:
        account = accounts[address]
        order = Order(
            oid, account, engine.books[market], is_buy, price, size, _int_in(reserved), cloid,
            expires_ms, post,
        )  # fmt: skip
        by_oid[oid] = order
        account.orders[oid] = order
        if cloid is not None:
            account.cloids[cloid] = order
    for market, bids, asks in body["queues"]:
        book = engine.books[market]
        for side, levels in ((book.bids, bids), (book.asks, asks)):
            for _price, oids in reversed(levels):  # worst first, so keys append in order
                for oid in oids:
                    side.add(by_oid[oid])
    engine.expiries = [(exp, oid, address) for exp, oid, address in body["expiries"]]
    position_leaves: dict[int, bytes] = {}
    if engine.perps is not None:
        position_leaves = _load_perp(engine, body["perp"])
    state = engine.state
    for address, asset in body["pairs"]:
        state.pairs.append((accounts[address], asset))
    state.totals = _ints_in(body["totals"])
    state.tree = MerkleTree(
        position_leaves[i]
        if asset < 0
        else balance_leaf(
            account.address,
            engine.assets[asset].token,
            state.totals[i] * engine.assets[asset].unit,
        )
        for i, (account, asset) in enumerate(state.pairs[: body["hashed"]])
    )
    state.dirty = {accounts[address]: None for address in body["dirty"]}
    engine.pending_withdrawals = [
        (wid, address, asset, _int_in(amount))
        for wid, address, asset, amount in body["pending_withdrawals"]
    ]
    for sequence, state_root, withdrawals_root, last_deposit_id, withdrawals in body["checkpoints"]:
        sealed = tuple(
            Withdrawal(wid, address, token, _int_in(amount))
            for wid, address, token, amount in withdrawals
        )
        checkpoint = Checkpoint(sequence, state_root, withdrawals_root, last_deposit_id, sealed)
        engine.withdrawal_trees.add(checkpoint, MerkleTree(w.leaf() for w in sealed))
    if engine.auctions is not None:
        _load_auction(engine, body["auction"])
    if engine.options is not None:
        _load_option(engine, body["option"])
    if engine.perps is not None:
        engine.perps.liquidator.rebuild()
    return engine
