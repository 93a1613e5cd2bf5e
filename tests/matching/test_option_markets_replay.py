"""Option markets are deterministic: a seeded stream of option, perp and committee entries
(trading on every series, a crash with liquidations, expiry and settlement) gives the pinned
digest; a restored snapshot continues with the same events, digests and roots as the
original; replaying the log reproduces it; compiled and interpreted builds agree."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import matching
from matching.engine import BlockResult, Engine
from matching.events import Reason
from tests.matching.helpers import T0
from tests.matching.interpreted import interpreted_output
from tests.matching.option_helpers import CHAIN, INDEX, OptionHarness, option_order, vols
from tests.matching.perp_helpers import BTC_PERP, INSURANCE, MEMBERS, TRADERS, oracle, perp_order

GOLDEN_OPTION_STREAM = "ec1a842e06442a70aba5ae34101b91814e88b849f7c09544b1b11b2353de0abd"
EXPIRY = T0 + 1_800_000
BLOCK_MS = 20_000


def option_log(blocks: int = 110, seed: int = 14) -> list[tuple[int, list[dict[str, Any]]]]:
    """(timestamp, entries) of a seeded stream; the series expire after ~90 blocks."""
    rng = random.Random(seed)
    h = OptionHarness(EXPIRY, twap_ms=120_000)
    h.fund(5_000_000, TRADERS[:5])
    h.fund(60_000, TRADERS[5:])  # a thin account: liquidated by the crash
    h.block([h.deposit(INSURANCE, 2_000_000)])
    index = INDEX
    h.block([oracle(m, (BTC_PERP, index)) for m in MEMBERS])
    for i in range(blocks):
        entries: list[dict[str, Any]] = []
        move = 800 if i == 40 else rng.randrange(970, 1031)  # block 40: the crash
        index = index * move // 1000
        entries += [oracle(m, (BTC_PERP, index)) for m in MEMBERS]
        if i % 7 == 0:
            vol = rng.randrange(500_000_000, 1_200_000_000)
            entries += [vols(m, (rng.choice(CHAIN)[0], vol)) for m in MEMBERS]
        options = h.engine.options
        assert options is not None
        for _ in range(rng.randrange(2, 7)):
            trader = rng.choice(TRADERS)
            account = h.engine.accounts.get(trader)
            roll = rng.random()
            if roll < 0.6:
                market = rng.choice(CHAIN)[0]
                mark = max(options.series[market].mark, 20)
                price = max(1, mark * rng.randrange(70, 131) // 100)
                side = rng.choice(("buy", "sell"))
                size = rng.randrange(1, 6)
                tif = rng.choice(("gtc", "gtc", "ioc", "post"))
                order = option_order(market, side, price, size, tif)
                if tif == "ioc" and rng.random() < 0.5:  # reduce-only, mostly of a holding
                    held = h.holding(trader, market) if account is not None else 0
                    if held and rng.random() < 0.8:
                        buy = held < 0
                        order["side"] = "buy" if buy else "sell"
                        order["price"] = max(1, mark * (130 if buy else 70) // 100)
                        order["size"] = abs(held) + rng.randrange(0, 3)
                    order["reduce_only"] = True
                entries.append(h.entry(trader, order))
            elif roll < 0.75 and account is not None and account.orders:
                order = rng.choice(list(account.orders.values()))
                action = {"type": "cancel", "market": order.book.id, "oid": order.oid}
                entries.append(h.entry(trader, action))
            elif roll < 0.85 and account is not None and account.orders:
                order = rng.choice(list(account.orders.values()))
                price = max(1, order.price + rng.randrange(-3, 4))
                action = {"type": "modify", "market": order.book.id, "oid": order.oid,
                          "price": price, "size": order.size}  # fmt: skip
                entries.append(h.entry(trader, action))
            elif roll < 0.95:
                side = rng.choice(("buy", "sell"))
                price = index * rng.randrange(98, 103) // 100
                size = 10 * rng.randrange(1, 5)
                entries.append(h.entry(trader, perp_order(side, price, size, BTC_PERP)))
            else:
                mode = rng.choice(("portfolio", "standard"))
                entries.append(h.entry(trader, {"type": "set_option_margin", "mode": mode}))
        h.block(entries, advance_ms=BLOCK_MS)
    return h.log


def run(log: list[tuple[int, list[dict[str, Any]]]], engine: Engine) -> list[BlockResult]:
    return [engine.apply_block(ts, entries) for ts, entries in log]


def stream_digest(log: list[tuple[int, list[dict[str, Any]]]] | None = None) -> str:
    log = option_log() if log is None else log
    h = OptionHarness(EXPIRY, twap_ms=120_000)
    digest = hashlib.sha256()
    for i, result in enumerate(run(log, h.engine)):
        digest.update(repr((result.expired, result.events, result.end)).encode())
        if i % 10 == 9:
            digest.update(h.engine.checkpoint().state_root)
    digest.update(h.engine.digest())
    return digest.hexdigest()


def test_the_stream_exercises_options() -> None:
    log = option_log()
    h = OptionHarness(EXPIRY, twap_ms=120_000)
    kinds: dict[str, int] = {}
    for result in run(log, h.engine):
        for event in [*result.expired, *[e for ev in result.events for e in ev], *result.end]:
            name = type(event).__name__
            kinds[name] = kinds.get(name, 0) + 1
            code = getattr(event, "reason", None) or getattr(event, "code", None)
            if code in (Reason.REDUCE_ONLY, Reason.REDUCE_ONLY_NO_POSITION):
                kinds[code] = kinds.get(code, 0) + 1
    for name in ("OptionPosition", "OptionMark", "Liquidation", "OptionSettlement",
                 "OptionSettled", "VolObserved", "Trade", "MarginModeSet",
                 Reason.REDUCE_ONLY, Reason.REDUCE_ONLY_NO_POSITION):  # fmt: skip
        assert kinds.get(name, 0) > 0, name


def test_the_stream_is_the_pinned_one() -> None:
    assert stream_digest() == GOLDEN_OPTION_STREAM


def test_a_restored_engine_continues_identically() -> None:
    log = option_log()
    for cut in (3, 30, 41, 70, 95):
        a = OptionHarness(EXPIRY, twap_ms=120_000).engine
        run(log[:cut], a)
        a.checkpoint()
        b = Engine.restore(a.snapshot())
        assert b.snapshot() == a.snapshot()
        for ts, entries in log[cut:]:
            ra, rb = a.apply_block(ts, entries), b.apply_block(ts, entries)
            assert ra == rb
        assert a.digest() == b.digest()
        assert a.checkpoint() == b.checkpoint()


def test_replaying_the_log_gives_the_same_state() -> None:
    log = option_log()
    a = OptionHarness(EXPIRY, twap_ms=120_000).engine
    b = OptionHarness(EXPIRY, twap_ms=120_000).engine
    assert run(log, a) == run(log, b)
    assert a.checkpoint() == b.checkpoint()


def test_compiled_and_interpreted_agree(tmp_path: Path) -> None:
    from matching import optionmarkets

    if matching.compiled():
        assert not optionmarkets.__file__.endswith(".py"), "optionmarkets.py is not compiled"
    out = interpreted_output(
        tmp_path,
        "from tests.matching.test_option_markets_replay import stream_digest; "
        "print(stream_digest())",
    )
    assert out == [stream_digest()] == [GOLDEN_OPTION_STREAM]
