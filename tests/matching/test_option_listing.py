"""Option series listed after genesis by a committee listing (docs/MATCHING.md, "Series by
admin action"): the engine lists the series at the block, trades it like a genesis series,
refuses a listing it cannot take with a rejection (never a fault), and a snapshot, a
replay and the compiled build all carry the listed series."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.config import MAX_MARKETS, SERIES_TERMS, Genesis
from matching.engine import Engine
from matching.events import Fill, Reason, Rejected, SeriesListed
from tests.matching.helpers import T0
from tests.matching.interpreted import interpreted_output
from tests.matching.option_helpers import EXPIRY, INDEX, OptionHarness, option_order
from tests.matching.perp_helpers import (
    BTC_PERP,
    ETH_USDC,
    MEMBERS,
    TRADERS,
    USDC,
    PerpHarness,
    perp_genesis_dict,
)

NEW = 40  # the listed series' id


def terms(market: int = NEW, **over: Any) -> dict[str, Any]:
    """A listing's terms: a BTC call at 52,000 expiring with the genesis chain."""
    base = {"id": market, "symbol": f"BTC-L{market}", "underlying": BTC_PERP,
            "strike": 52_000, "expiry_ms": EXPIRY, "right": "call", "underlying_lots": 1,
            "vol_e9": 700_000_000, "tick_size": 1, "lot_size": 1, "maker_fee_bps": 2,
            "taker_fee_bps": 5}  # fmt: skip
    return {**base, **over}


def listing(series: dict[str, Any]) -> dict[str, Any]:
    return {"action": {"type": "list_series", "series": series}}


def listed(events: list[Any]) -> SeriesListed:
    assert len(events) == 1 and type(events[0]) is SeriesListed, events
    found: SeriesListed = events[0]
    return found


def rejected(events: list[Any]) -> str:
    assert len(events) == 1 and type(events[0]) is Rejected, events
    code: str = events[0].code
    return code


def trade_on(h: PerpHarness, market: int) -> list[Fill]:
    """A seller rests an ask, a buyer takes it: the fills."""
    h.block([h.deposit(t, 10_000_000) for t in TRADERS[:2]])
    h.prices((BTC_PERP, INDEX))
    h.one(TRADERS[0], option_order(market, "sell", 3_000, 2))
    events = h.one(TRADERS[1], option_order(market, "buy", 3_000, 2))
    return [e for e in events if type(e) is Fill]


def test_a_listed_series_trades_like_a_genesis_one() -> None:
    h = OptionHarness()
    event = listed(h.block([listing(terms())]).events[0])
    assert event == SeriesListed(NEW, "BTC-L40", BTC_PERP, "call", 52_000, EXPIRY)
    options = h.engine.options
    assert options is not None and NEW in options.series and NEW in h.engine.books
    assert NEW in options.vols.observations
    assert h.engine.genesis.markets[-1].symbol == "BTC-L40"
    fills = trade_on(h, NEW)
    assert [(f.market, f.size) for f in fills] == [(NEW, 2), (NEW, 2)]
    assert h.holding(TRADERS[1], NEW) == 2 and h.holding(TRADERS[0], NEW) == -2
    assert options.series[NEW].mark > 0  # marked at the block's end as every series


def test_the_first_series_of_a_perp_only_genesis_starts_the_option_half() -> None:
    h = PerpHarness()
    assert h.engine.options is None
    listed(h.block([listing(terms())]).events[0])
    options = h.engine.options
    assert options is not None and list(options.series) == [NEW]
    assert h.engine.genesis.option_rules is not None  # the default rules
    fills = trade_on(h, NEW)
    assert len(fills) == 2
    mode = h.one(TRADERS[0], {"type": "set_option_margin", "mode": "standard"})
    assert type(mode[0]).__name__ == "MarginModeSet"


@pytest.mark.parametrize(
    ("series", "code"),
    [
        (terms(21), Reason.MARKET_TAKEN),  # a genesis series' id
        (terms(ETH_USDC), Reason.MARKET_TAKEN),  # a spot market's id
        (terms(symbol="BTC-C50000"), Reason.MARKET_TAKEN),  # a genesis series' symbol
        (terms(symbol="ETH-USDC"), Reason.MARKET_TAKEN),
        (terms(underlying=ETH_USDC), Reason.BAD_UNDERLYING),  # a spot market
        (terms(underlying=99), Reason.BAD_UNDERLYING),  # no market
        (terms(underlying=21), Reason.BAD_UNDERLYING),  # a series
        (terms(expiry_ms=T0), Reason.EXPIRY_TOO_SOON),  # past
        (terms(right="straddle"), Reason.MALFORMED),
        (terms(strike=0), Reason.MALFORMED),
        (terms(vol_e9=10**12), Reason.MALFORMED),
        (terms(maker_fee_bps=5_000), Reason.MALFORMED),
        (terms(symbol=""), Reason.MALFORMED),
        (terms(symbol="X" * 33), Reason.MALFORMED),
        (terms(strike=1 << 70), Reason.MALFORMED),
        (terms(strike=[[[[1]]]]), Reason.MALFORMED),
        ({**terms(), "kind": "spot"}, Reason.MALFORMED),  # an extra key
        ({k: v for k, v in terms().items() if k != "vol_e9"}, Reason.MALFORMED),
        ("BTC", Reason.MALFORMED),
    ],
)
def test_a_listing_the_engine_cannot_take_is_rejected(series: Any, code: str) -> None:
    h = OptionHarness()
    before = h.engine.snapshot()
    h.ts += 100
    result = h.engine.apply_block(h.ts, [listing(series)])
    assert rejected(result.events[0]) == code
    assert NEW not in h.engine.books
    # Nothing but the block's time moved: the same state as an empty block at that time.
    twin = Engine.restore(before)
    twin.apply_block(h.ts, [])
    assert twin.snapshot() == h.engine.snapshot()


def test_malformed_listing_actions_and_no_perp_market() -> None:
    h = OptionHarness()
    extra = {"action": {"type": "list_series", "series": terms(), "member": b"x"}}
    assert rejected(h.block([extra]).events[0]) == Reason.MALFORMED
    assert rejected(h.block([{"action": {"type": "list_series"}}]).events[0]) == Reason.MALFORMED
    spot = Genesis.from_dict({k: v for k, v in perp_genesis_dict().items()
                              if k not in ("insurance_account", "oracle_members",
                                           "oracle_quorum")} | {
        "markets": perp_genesis_dict()["markets"][:1]})  # fmt: skip
    engine = Engine(spot)
    result = engine.apply_block(T0, [listing(terms())])
    assert rejected(result.events[0]) == Reason.BAD_UNDERLYING


def test_expiry_must_be_at_least_twap_ms_ahead() -> None:
    h = OptionHarness(twap_ms=60_000)
    ts = h.ts + 100
    short = h.block([listing(terms(expiry_ms=ts + 59_999))]).events[0]
    assert rejected(short) == Reason.EXPIRY_TOO_SOON
    ts = h.ts + 100
    listed(h.block([listing(terms(expiry_ms=ts + 60_000))]).events[0])


def test_a_taken_id_is_taken_by_a_listed_series_too() -> None:
    h = OptionHarness()
    listed(h.block([listing(terms())]).events[0])
    again = h.block([listing(terms()), listing(terms(41, symbol="BTC-L40"))])
    assert [rejected(ev) for ev in again.events] == [Reason.MARKET_TAKEN] * 2


def test_the_market_limit() -> None:
    raw = perp_genesis_dict()
    spot = raw["markets"][0]
    # Fill up to the limit with spot markets, leaving room for one listing.
    raw["markets"] += [{**spot, "id": 100 + i, "symbol": f"S{i}"} for i in range(MAX_MARKETS - 4)]
    engine = Engine(Genesis.from_dict(raw))
    assert len(engine.books) == MAX_MARKETS - 1
    first = engine.apply_block(T0, [listing(terms()), listing(terms(41))])
    listed(first.events[0])
    assert rejected(first.events[1]) == Reason.TOO_MANY_MARKETS
    assert len(engine.books) == MAX_MARKETS


def listing_log() -> list[tuple[int, list[dict[str, Any]]]]:
    """A stream that lists two series (the second on a perp-only genesis' option half),
    trades them, and crosses expiry of the first."""
    h = PerpHarness()
    h.block([h.deposit(t, 10_000_000) for t in TRADERS[:3]])
    h.prices((BTC_PERP, INDEX))
    short_expiry = h.ts + 900_000 + 300_000
    h.block([listing(terms(expiry_ms=short_expiry))])
    h.block([listing(terms(41, symbol="BTC-P48", right="put", strike=48_000))])
    for i in range(30):
        price = INDEX + 50 * (i % 7) - 150
        entries = [{"action": {"type": "oracle", "member": m, "prices": [[BTC_PERP, price]]}}
                   for m in MEMBERS]  # fmt: skip
        market = NEW if i % 2 else 41
        entries.append(h.entry(TRADERS[i % 3], option_order(market, "sell", 2_900 + i, 1)))
        entries.append(h.entry(TRADERS[(i + 1) % 3], option_order(market, "buy", 2_950 + i, 1)))
        h.block(entries, advance_ms=60_000)
    return h.log


def run(log: list[tuple[int, list[dict[str, Any]]]], engine: Engine) -> list[Any]:
    return [engine.apply_block(ts, entries) for ts, entries in log]


def listing_digest() -> str:
    digest = hashlib.sha256()
    engine = Engine(Genesis.from_dict(perp_genesis_dict()))
    for i, result in enumerate(run(listing_log(), engine)):
        digest.update(repr((result.expired, result.events, result.end)).encode())
        if i % 5 == 4:
            digest.update(engine.checkpoint().state_root)
    digest.update(engine.digest())
    return digest.hexdigest()


def test_the_listing_stream_trades_and_settles() -> None:
    engine = Engine(Genesis.from_dict(perp_genesis_dict()))
    names: set[str] = set()
    for result in run(listing_log(), engine):
        for event in [*result.expired, *[e for ev in result.events for e in ev], *result.end]:
            names.add(type(event).__name__)
    assert {"SeriesListed", "Trade", "OptionMark", "OptionSettlement"} <= names
    options = engine.options
    assert options is not None and options.series[NEW].settled


def test_a_snapshot_after_a_listing_restores_the_series() -> None:
    log = listing_log()
    for cut in (3, 4, 10, 25):
        a = Engine(Genesis.from_dict(perp_genesis_dict()))
        run(log[:cut], a)
        a.checkpoint()
        b = Engine.restore(a.snapshot())
        assert b.snapshot() == a.snapshot()
        assert list(b.books) == list(a.books)
        assert b.genesis == a.genesis
        for ts, entries in log[cut:]:
            assert a.apply_block(ts, entries) == b.apply_block(ts, entries)
        assert a.digest() == b.digest()
        assert a.checkpoint() == b.checkpoint()


def test_replaying_a_listing_gives_the_same_root() -> None:
    log = listing_log()
    a = Engine(Genesis.from_dict(perp_genesis_dict()))
    b = Engine(Genesis.from_dict(perp_genesis_dict()))
    assert run(log, a) == run(log, b)
    assert a.checkpoint() == b.checkpoint()
    assert listing_digest() == listing_digest()


def test_compiled_and_interpreted_agree(tmp_path: Path) -> None:
    out = interpreted_output(
        tmp_path,
        "from tests.matching.test_option_listing import listing_digest; print(listing_digest())",
    )
    assert out == [listing_digest()]


_values = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.text(max_size=40),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(SERIES_TERMS), _values, max_size=len(SERIES_TERMS)),
    st.booleans(),
)
def test_any_terms_list_or_reject_never_fault(over: dict[str, Any], whole: bool) -> None:
    series = {**terms(), **over} if whole else over
    h = OptionHarness()
    events = h.block([listing(series)]).events[0]
    assert len(events) == 1
    if type(events[0]) is SeriesListed:
        assert events[0].market in h.engine.books
        b = Engine.restore(h.engine.snapshot())
        assert b.snapshot() == h.engine.snapshot()
    else:
        assert type(events[0]) is Rejected


def test_the_quote_is_the_collateral() -> None:
    h = OptionHarness()
    listed(h.block([listing(terms())]).events[0])
    market = h.engine.genesis.markets[-1]
    assert market.quote == USDC and market.kind == "option"


def test_seqnet_replay_of_a_log_with_a_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`seqnet replay` (node/replay.py) lists the series again and ends at the same root."""
    from node import replay

    log = listing_log()
    lines = [replay.genesis_line(Genesis.from_dict(perp_genesis_dict()))]
    lines += [replay.block_line(i + 1, ts, entries) for i, (ts, entries) in enumerate(log)]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert replay.main([str(path), "--json"], prog="seqnet replay") == 0
    out = capsys.readouterr().out
    assert out.count('"event":"series_listed"') == 2
    engine = Engine(Genesis.from_dict(perp_genesis_dict()))
    run(log, engine)
    assert out.splitlines()[-1].count("0x" + engine.checkpoint().state_root.hex()) == 1
