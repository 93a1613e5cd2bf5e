"""Batch auction markets, case by case (docs/MATCHING.md, "Batch auctions"): the genesis
field, what a place does, the clearing price and its tie-breaks, pro-rata allocation and
its rounding, IOC remainders, refused time-in-force, self-cross, modify, cancels before
the clearing, batches of several blocks, fees, snapshots in the middle of a batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from matching.config import ConfigError, Genesis
from matching.engine import Engine
from matching.events import (
    AuctionCleared,
    BalanceChanged,
    Cancelled,
    Fill,
    Modified,
    Reason,
    Rejected,
    Trade,
    to_plain,
)
from tests.matching.auction_helpers import AuctionHarness, auction_genesis
from tests.matching.helpers import (
    ALICE,
    BOB,
    BTC,
    BTC_USDC,
    CAROL,
    ETH,
    ETH_USDC,
    FEE,
    USDC,
    addr,
    book_view,
    cancel,
    genesis_dict,
    modify,
    place,
)

DAVE = addr(4)


def funded(blocks: int = 1) -> AuctionHarness:
    h = AuctionHarness(blocks)
    for who in (ALICE, BOB, CAROL, DAVE):
        for asset in (USDC, ETH, BTC):
            h.fund(who, asset, 10**7)
    # Align on a batch boundary so each test's first block opens a batch.
    while h.engine.auctions is not None and h.engine.auctions.height % blocks:
        h.block([])
    return h


def cleared(end: list[Any]) -> AuctionCleared:
    found = [e for e in end if isinstance(e, AuctionCleared)]
    assert len(found) == 1
    return found[0]


def fills_by_oid(end: list[Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    for e in end:
        if isinstance(e, Fill):
            out[e.oid] = out.get(e.oid, 0) + e.size
    return out


# ---------------------------------------------------------------------------- genesis


def test_genesis_field_defaults_to_continuous_and_is_written_only_when_set() -> None:
    plain = Genesis.from_dict(genesis_dict())
    assert all(m.auction_blocks == 0 for m in plain.markets)
    assert all("auction_blocks" not in m for m in plain.to_dict()["markets"])
    g = auction_genesis(5)
    assert g.markets[0].auction_blocks == 5 and g.markets[1].auction_blocks == 0
    assert g.to_dict()["markets"][0]["auction_blocks"] == 5
    assert Genesis.from_dict(g.to_dict()) == g
    assert Engine(plain).auctions is None


@pytest.mark.parametrize("value", [-1, 10_001, "2", True, 1.0])
def test_genesis_refuses_bad_auction_blocks(value: object) -> None:
    raw = genesis_dict()
    raw["markets"][0]["auction_blocks"] = value
    with pytest.raises(ConfigError, match="auction_blocks"):
        Genesis.from_dict(raw)


def test_genesis_refuses_auction_blocks_on_a_perp_market() -> None:
    from tests.matching.perp_helpers import perp_genesis_dict

    raw = perp_genesis_dict()
    perp = next(m for m in raw["markets"] if m.get("kind") == "perp")
    perp["auction_blocks"] = 1
    with pytest.raises(ConfigError, match="spot markets only"):
        Genesis.from_dict(raw)
    g = Genesis.from_dict(perp_genesis_dict())
    market = next(m for m in g.markets if m.perp is not None)
    bad = dataclasses.replace(
        g, markets=tuple(dataclasses.replace(m, auction_blocks=1) if m is market else m
                         for m in g.markets)
    )  # fmt: skip
    with pytest.raises(ConfigError, match="auction_blocks"):
        bad.check()


# ----------------------------------------------------------------------- the clearing


def test_orders_wait_for_the_end_of_the_batch_then_clear_at_one_price() -> None:
    h = funded(3)
    r1 = h.block([h.entry(ALICE, place(side="buy", price=110, size=50))])
    r2 = h.block([h.entry(BOB, place(side="sell", price=100, size=30))])
    # Crossed, but nothing matched: the batch is still collecting.
    assert not r1.end and not r2.end
    assert not any(isinstance(e, Trade) for evs in r2.events for e in evs)
    assert h.engine.books[ETH_USDC].crossed()
    r3 = h.block([h.entry(CAROL, place(side="sell", price=105, size=30))])
    c = cleared(r3.end)
    # demand 50 at every price up to 110; supply 30 below 105, 60 from 105: volume 50 at
    # 105 and 110 (imbalance 10 each); no reference yet: the middle, rounded down: 105.
    assert (c.price, c.volume, c.imbalance) == (105, 50, -10)
    assert to_plain(c) == {"event": "auction", "market": ETH_USDC, "batch": c.batch,
                           "price": 105, "volume": 50, "imbalance": -10}  # fmt: skip
    fills = [e for e in r3.end if isinstance(e, Fill)]
    assert {f.price for f in fills} == {105}
    assert fills_by_oid(r3.end) == {1: 50, 2: 30, 3: 20}
    assert not h.engine.books[ETH_USDC].crossed()
    assert book_view(h.engine) == ([], [(105, [3])])


def test_price_priority_then_pro_rata_with_largest_remainders() -> None:
    h = funded()
    entries = [
        h.entry(DAVE, place(side="sell", price=95, size=50)),  # better than the price
        h.entry(ALICE, place(side="sell", price=100, size=100)),  # the marginal level:
        h.entry(BOB, place(side="sell", price=100, size=200)),  # 60 lots share 25
        h.entry(CAROL, place(side="sell", price=100, size=300)),
        h.entry(addr(5), place(side="buy", price=100, size=300)),
    ]
    for who in (addr(5),):
        h.fund(who, USDC, 10**7)
    r = h.block(entries)
    c = cleared(r.end)
    assert (c.price, c.volume, c.imbalance) == (100, 300, -350)
    # 25 lots at 100 for 10/20/30 lots: 4.17, 8.33, 12.5 -> 4, 8, 12 and the lot left
    # goes to the largest remainder (12.5): 4, 8, 13.
    assert fills_by_oid(r.end) == {1: 50, 2: 40, 3: 80, 4: 130, 5: 300}
    residual = {o.oid: o.size for o in h.engine.open_orders(ALICE) + h.engine.open_orders(BOB)}
    assert residual == {2: 60, 3: 120}
    assert [o.size for o in h.engine.open_orders(CAROL)] == [170]


def test_reference_price_breaks_ties_after_the_first_clearing() -> None:
    h = funded()
    r = h.block([
        h.entry(ALICE, place(side="buy", price=120, size=10)),
        h.entry(BOB, place(side="sell", price=100, size=10)),
    ])  # fmt: skip
    assert cleared(r.end).price == 110  # 100..120 all clear 10, none imbalanced: middle
    r = h.block([
        h.entry(ALICE, place(side="buy", price=130, size=10)),
        h.entry(BOB, place(side="sell", price=115, size=10)),
    ])  # fmt: skip
    assert cleared(r.end).price == 115  # the closest to the reference 110 in 115..130
    r = h.block([
        h.entry(ALICE, place(side="buy", price=125, size=10)),
        h.entry(BOB, place(side="sell", price=95, size=10)),
    ])  # fmt: skip
    assert cleared(r.end).price == 115  # the reference itself, inside 95..125


def test_smaller_imbalance_wins_among_equal_volumes() -> None:
    h = funded()
    r = h.block([
        h.entry(ALICE, place(side="buy", price=110, size=20)),
        h.entry(BOB, place(side="sell", price=100, size=20)),
        h.entry(CAROL, place(side="sell", price=105, size=10)),
    ])  # fmt: skip
    # 100: volume 20, imbalance 0; 105 and 110: volume 20, imbalance 10.
    c = cleared(r.end)
    assert (c.price, c.volume, c.imbalance) == (100, 20, 0)


def test_ioc_and_market_remainders_are_cancelled_after_the_clearing_gtc_rests() -> None:
    h = funded()
    r = h.block([
        h.entry(ALICE, place(side="buy", price=105, size=50, tif="ioc")),
        h.entry(BOB, place(side="buy", price=110, size=50, kind="market", tif="ioc")),
        h.entry(CAROL, place(side="sell", price=100, size=60)),
        h.entry(DAVE, place(side="buy", price=90, size=20, tif="ioc")),  # crosses nothing
        h.entry(DAVE, place(side="sell", price=130, size=20)),
    ])  # fmt: skip
    c = cleared(r.end)
    assert c.volume == 60
    cancelled = {e.oid: e.size for e in r.end if isinstance(e, Cancelled)}
    assert all(e.reason == Reason.IOC for e in r.end if isinstance(e, Cancelled))
    # 100 and 105 clear 60 (imbalance 40): the middle is 100; the market order's
    # protection price 110 is its limit, so it fills first, in full.
    assert c.price == 100
    assert fills_by_oid(r.end) == {1: 10, 2: 50, 3: 60}
    assert cancelled == {1: 40, 4: 20}
    assert book_view(h.engine) == ([], [(130, [5])])
    for who in (ALICE, BOB):
        assert h.balance(who, USDC)[1] == 0  # nothing stays reserved


def test_fok_and_post_only_are_refused_on_auction_markets_only() -> None:
    h = funded()
    for action in (
        place(side="buy", price=100, size=10, tif="fok"),
        place(side="buy", price=100, size=10, tif="post"),
        place(side="buy", price=100, size=10, kind="market", tif="fok"),
    ):
        (e,) = h.one(ALICE, action)
        assert isinstance(e, Rejected) and e.code == Reason.BAD_TIF
        assert "batch auction" in e.message
    events = h.one(ALICE, place(market=BTC_USDC, side="buy", price=50, size=1, tif="post"))
    assert not isinstance(events[0], Rejected)  # the continuous market is unchanged


def test_continuous_market_still_matches_at_once_beside_an_auction_market() -> None:
    h = funded(4)
    h.one(ALICE, place(market=BTC_USDC, side="sell", price=50, size=3))
    events = h.one(BOB, place(market=BTC_USDC, side="buy", price=55, size=2))
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.price, t.size, t.taker_side) for t in trades] == [(50, 2, "buy")]


def test_self_cross_is_refused_on_place_and_modify() -> None:
    h = funded(2)
    h.one(ALICE, place(side="sell", price=100, size=10))
    (e,) = h.one(ALICE, place(side="buy", price=100, size=10))
    assert isinstance(e, Rejected) and e.code == Reason.SELF_CROSS
    h.one(ALICE, place(side="buy", price=95, size=10))  # below its own ask: fine
    (e,) = h.one(ALICE, modify(2, 105, 10))
    assert isinstance(e, Rejected) and e.code == Reason.SELF_CROSS
    assert book_view(h.engine) == ([(95, [2])], [(100, [1])])


def test_modify_re_rests_without_matching_and_keeps_ioc() -> None:
    h = funded(2)
    h.block([
        h.entry(ALICE, place(side="buy", price=90, size=20, tif="ioc", cloid=7)),
        h.entry(BOB, place(side="sell", price=100, size=20)),
    ])  # fmt: skip
    r = h.block([h.entry(ALICE, modify(1, 100, 10))])
    (m, b) = r.events[0]
    assert m == Modified(1, ALICE, ETH_USDC, 100, 10, False)
    assert isinstance(b, BalanceChanged) and b.locked == 100 + 100 * 30 // 10_000
    assert fills_by_oid(r.end) == {1: 10, 2: 10}
    assert [o.size for o in h.engine.open_orders(ALICE)] == []  # filled; IOC anyway
    (e,) = h.one(ALICE, modify(1, 100, 10))
    assert isinstance(e, Rejected) and e.code == Reason.UNKNOWN_ORDER


def test_a_cancel_anywhere_in_the_batch_comes_before_its_clearing() -> None:
    h = funded(2)
    h.block([
        h.entry(ALICE, place(side="buy", price=110, size=20)),
        h.entry(CAROL, place(side="buy", price=105, size=20)),
    ])  # fmt: skip
    # The leader puts the taker first and the cancel last: the cancel still wins.
    r = h.block([h.entry(BOB, place(side="sell", price=100, size=20)), h.entry(ALICE, cancel(1))])
    assert isinstance(r.events[1][0], Cancelled)
    assert fills_by_oid(r.end) == {2: 20, 3: 20}


def test_fees_every_fill_pays_the_taker_rate_and_funds_are_conserved() -> None:
    h = funded()
    before = [sum(h.engine.balance(w, a)[0] + h.engine.balance(w, a)[1]
                  for w in (ALICE, BOB, FEE)) for a in (USDC, ETH)]  # fmt: skip
    r = h.block([
        h.entry(ALICE, place(side="buy", price=2_000, size=500)),
        h.entry(BOB, place(side="sell", price=2_000, size=500)),
    ])  # fmt: skip
    fills = [e for e in r.end if isinstance(e, Fill)]
    notional = 2_000 * 50
    assert [(f.side, f.fee, f.maker) for f in fills] == [
        ("buy", notional * 30 // 10_000, False),
        ("sell", notional * 30 // 10_000, False),
    ]
    assert h.balance(FEE, USDC) == (2 * (notional * 30 // 10_000), 0)
    assert h.balance(ALICE, ETH) == (10**7 + 500, 0)
    assert h.balance(BOB, USDC) == (10**7 + notional - notional * 30 // 10_000, 0)
    after = [sum(h.engine.balance(w, a)[0] + h.engine.balance(w, a)[1]
                 for w in (ALICE, BOB, FEE)) for a in (USDC, ETH)]  # fmt: skip
    assert after == before


def test_a_batch_without_a_cross_emits_no_clearing() -> None:
    h = funded()
    r = h.block([
        h.entry(ALICE, place(side="buy", price=95, size=20)),
        h.entry(BOB, place(side="sell", price=100, size=20)),
    ])  # fmt: skip
    assert r.end == []
    assert book_view(h.engine) == ([(95, [1])], [(100, [2])])


def test_snapshot_in_the_middle_of_a_batch_continues_identically() -> None:
    h = funded(3)
    h.block([
        h.entry(ALICE, place(side="buy", price=110, size=50, tif="ioc")),
        h.entry(BOB, place(side="sell", price=100, size=30, expires_ms=h.ts + 5)),
    ])  # fmt: skip
    data = h.engine.snapshot()
    copy = Engine.restore(data)
    assert copy.snapshot() == data
    entries = [h.entry(CAROL, place(side="sell", price=105, size=30))]
    for ts in (h.ts + 1, h.ts + 2, h.ts + 9):
        assert copy.apply_block(ts, entries) == h.engine.apply_block(ts, entries)
        entries = []
    assert copy.checkpoint() == h.engine.checkpoint()
    assert copy.snapshot() == h.engine.snapshot()


def test_a_node_genesis_file_carries_auction_blocks(tmp_path: Path) -> None:
    from node.config import ConfigError as NodeConfigError
    from node.genesis import committee_init, load_genesis

    genesis = committee_init(tmp_path / "c", 1, base_port=17000)
    text = (tmp_path / "c" / "genesis.toml").read_text()
    old = 'symbol = "ETH-USDC"\n'
    assert old in text and "auction_blocks" not in text  # continuous: not written
    path = tmp_path / "auction.toml"
    path.write_text(text.replace(old, old + "auction_blocks = 2\n", 1))
    loaded = load_genesis(path)
    assert [m.auction_blocks for m in loaded.exchange.markets] == [2, 0]
    assert loaded.genesis_hash() != genesis.genesis_hash()
    assert Engine(loaded.exchange).auctions is not None
    path.write_text(text.replace(old, old + "auction_blocks = -1\n", 1))
    with pytest.raises(NodeConfigError, match="auction_blocks"):
        load_genesis(path)
