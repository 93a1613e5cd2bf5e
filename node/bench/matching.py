"""`seqnet bench matching`: matching engine throughput, and pyorderbook on the same stream.

Three seeded streams over several markets and ~10,000 funded accounts, cut into blocks:
- mixed: ~55% passive limits (gtc, post-only, some with cloid or expiry), ~30% cancels
  (by oid, by cloid, cancel-all, modify), ~15% marketable (limit IOC/FOK/GTC, market
  IOC/FOK); some entries signed by approved agents.
- burst: the mixed stream with fewer regular cancels, plus a few blocks that cancel
  resting orders in bulk: a quarter of the stream is cancels packed into those blocks.
- limit-only: GTC limits (some crossing) and cancels, run through our engine and through
  pyorderbook (pure-Python price-time book, no balances/fees/events) in the same run.
- perp: the mixed stream's shape on four perpetual markets (every order checked for
  initial margin, every fill moving positions), with the committee's oracle entries in
  every block; and a liquidation cascade: 10,000 accounts long at ~8x, then one block in
  which the oracle falls 10 % and the market maker requotes, timed as a whole (all are
  liquidated inside it; the insurance fund takes what the book does not).

The generator runs a shadow engine so that cancels target orders that really rest.
Generation and funding are not timed; each timed run starts from a fresh engine with the
funding blocks applied. The timed run must reproduce the shadow's state root.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

import matching
from matching.config import Genesis
from matching.engine import BlockResult, Engine
from matching.events import Accepted
from node.bench import options as options_bench

BLOCK_ENTRIES = 1_000
BLOCK_MS = 50
T0_MS = 1_700_000_000_000
MARKETS = (("ETH", 3_000), ("BTC", 60_000), ("SOL", 150), ("ARB", 1))  # (symbol, USD price)

Entry = dict[str, Any]


def _address(n: int) -> bytes:
    return (0x5E00 + n).to_bytes(20, "big")


MEMBERS = tuple(bytes([0xC0 + i]) * 20 for i in range(4))  # the oracle committee (quorum 3)
INSURANCE = bytes([0x1F]) * 20


def perp_genesis() -> Genesis:
    """The spot genesis's four markets as perpetuals on USDC: lots and ticks as spot,
    10x maximum leverage (10 % initial, 5 % maintenance; 20 % / 10 % beyond $10M)."""
    raw = bench_genesis().to_dict()
    raw["assets"] = raw["assets"][:1]
    for market in raw["markets"]:
        del market["base"]
        market.update(
            kind="perp", margin_tiers=[[10**13, 1_000, 500], [10**15, 2_000, 1_000]],
            max_leverage=10, oracle_max_age_ms=10_000,
        )  # fmt: skip
    raw["insurance_account"] = "0x" + INSURANCE.hex()
    raw["oracle_members"] = ["0x" + m.hex() for m in MEMBERS]
    raw["oracle_quorum"] = 3
    return Genesis.from_dict(raw)


def bench_genesis() -> Genesis:
    """USDC in micro-dollars; each base asset in 10^-9; a lot is worth ~1-10 USD at the
    start price, a tick is 1/100,000 of the price, so mids sit near 100,000 ticks."""
    assets = [{"id": 0, "symbol": "USDC", "token": "0x" + "a0" * 20, "unit": 1}]
    markets = []
    for i, (symbol, usd) in enumerate(MARKETS, start=1):
        assets.append({"id": i, "symbol": symbol, "token": f"0x{i:040x}", "unit": 10**9})
        lot = max(1, 10**9 // usd)  # base units worth ~1 USD
        price_per_lot = usd * lot // 10**3  # USDC micro-units per lot
        markets.append(
            {"id": i - 1, "symbol": f"{symbol}-USDC", "base": i, "quote": 0, "lot_size": lot,
             "tick_size": max(1, price_per_lot // 100_000), "maker_fee_bps": 1,
             "taker_fee_bps": 5}
        )  # fmt: skip
    return Genesis.from_dict(
        {"fee_account": "0x" + "fe" * 20, "assets": assets, "markets": markets}
    )


PeerOp = tuple[bool, int, bool, int, int, int]  # is_place, market, is_buy, ticks, lots, place #


@dataclass
class Stream:
    """Blocks are kept msgpack-encoded, as a node receives them, and decoded just before
    they are applied (untimed): a block's entries are then fresh in the cache, as in a
    node, rather than cold objects from a gigabyte of pre-built dicts."""

    name: str
    setup: list[list[Entry]]  # funding and agent approvals, not timed
    genesis: Genesis
    blocks: list[bytes] = field(default_factory=list)
    entries: int = 0
    state_root: bytes = b""  # the shadow engine's, which the timed run must reproduce
    peer_blocks: list[list[PeerOp]] = field(default_factory=list)  # limit-only stream

    def add(self, block: list[Entry]) -> None:
        self.blocks.append(msgpack.packb(block, use_bin_type=True))
        self.entries += len(block)


class Generator:
    def __init__(
        self,
        seed: int,
        accounts: int,
        block_entries: int = BLOCK_ENTRIES,
        genesis: Genesis | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.block_entries = block_entries
        self.genesis = genesis or bench_genesis()
        self.perp = bool(self.genesis.perp_markets)
        self.accounts = [_address(i) for i in range(accounts)]
        self.agents = {i: _address(1_000_000 + i) for i in range(0, accounts, 10)}
        self.markets = self.genesis.markets
        self.shadow = Engine(self.genesis)
        self.mid = [100_000 * m.tick_size for m in self.markets]
        self.nonce = [0] * accounts
        self.cloid = [0] * accounts
        self.ts = T0_MS
        self.pool: list[tuple[int, int, int, int | None]] = []  # (account, market, oid, cloid)

    # -- entries --------------------------------------------------------------------

    def _entry(self, who: int, action: dict[str, Any], agent_ok: bool = True) -> Entry:
        nonce = self.nonce[who] = max(self.nonce[who] + 1, self.ts)
        account = self.accounts[who]
        signer = account
        if agent_ok and who in self.agents and self.rng.random() < 0.5:
            signer = self.agents[who]
        return {"account": account, "signer": signer, "nonce": nonce, "action": action}

    def _place(
        self, who: int, m: int, is_buy: bool, price: int, lots: int, kind: str, tif: str,
        cloid: bool = False, expires: bool = False,
    ) -> Entry:  # fmt: skip
        cl = None
        if cloid:
            cl = self.cloid[who] = self.cloid[who] + 1
        action = {
            "type": "place", "market": m, "side": "buy" if is_buy else "sell", "kind": kind,
            "price": price, "size": lots * self.markets[m].lot_size, "tif": tif,
            "reduce_only": False, "cloid": cl,
            "expires_ms": self.ts + self.rng.randrange(1_000, 30_000) if expires else None,
        }  # fmt: skip
        return self._entry(who, action)

    def passive(self, cloid_share: float = 0.3) -> Entry:
        rng = self.rng
        m = rng.randrange(len(self.markets))
        tick = self.markets[m].tick_size
        if rng.random() < 0.05:
            self.mid[m] += rng.choice((-tick, tick))
        is_buy = rng.random() < 0.5
        offset = rng.randrange(1, 40) * tick
        price = self.mid[m] - offset if is_buy else self.mid[m] + offset
        r = rng.random()
        tif = "post" if r < 0.15 else "gtc"
        return self._place(
            rng.randrange(len(self.accounts)), m, is_buy, price, rng.randrange(1, 10), "limit",
            tif, cloid=rng.random() < cloid_share, expires=r > 0.95,
        )  # fmt: skip

    def marketable(self) -> Entry:
        rng = self.rng
        m = rng.randrange(len(self.markets))
        tick = self.markets[m].tick_size
        is_buy = rng.random() < 0.5
        r = rng.random()
        lots = rng.randrange(1, 12)
        who = rng.randrange(len(self.accounts))
        if r < 0.25:  # market order: a worst price 60 ticks through the mid
            price = self.mid[m] + (60 if is_buy else -60) * tick
            return self._place(who, m, is_buy, price, lots, "market", "ioc" if r < 0.18 else "fok")
        through = rng.randrange(1, 8) * tick
        price = self.mid[m] + through if is_buy else self.mid[m] - through
        tif = "ioc" if r < 0.65 else "fok" if r < 0.75 else "gtc"
        return self._place(who, m, is_buy, price, lots, "limit", tif)

    def _pick(self) -> tuple[int, int, int, int | None] | None:
        """A pooled order that still rests in the shadow (a few tries), swap-removed."""
        pool, accounts = self.pool, self.shadow.accounts
        for _ in range(4):
            if not pool:
                return None
            i = self.rng.randrange(len(pool))
            pool[i], pool[-1] = pool[-1], pool[i]
            item = pool.pop()
            if item[2] in accounts[self.accounts[item[0]]].orders:
                return item
        return None

    def cancel(self) -> Entry | None:
        picked = self._pick()
        if picked is None:
            return None
        who, m, oid, cl = picked
        r = self.rng.random()
        if cl is not None and r < 0.3:
            return self._entry(who, {"type": "cancel_cloid", "market": m, "cloid": cl})
        if r > 0.995:
            return self._entry(who, {"type": "cancel_all", "market": m})
        if r > 0.9:
            order = self.shadow.accounts[self.accounts[who]].orders[oid]
            tick = self.markets[m].tick_size
            lot = self.markets[m].lot_size
            price = order.price + self.rng.choice((0, 0, tick, -tick)) * (1 if order.is_buy else -1)
            size = max(lot, order.size + self.rng.choice((-lot, lot)))
            self.pool.append(picked)
            return self._entry(
                who, {"type": "modify", "market": m, "oid": oid, "price": price, "size": size}
            )
        return self._entry(who, {"type": "cancel", "market": m, "oid": oid})

    # -- blocks ---------------------------------------------------------------------

    def setup(self) -> list[list[Entry]]:
        blocks: list[list[Entry]] = []
        deposit_id = 0
        block: list[Entry] = []
        for who, account in enumerate(self.accounts):
            for asset in self.genesis.assets:
                deposit_id += 1
                amount = 10**13 if asset.id == 0 else 10**14
                if self.perp:
                    amount = 10**10  # $10,000 of collateral per account
                block.append({"action": {"type": "deposit", "deposit_id": deposit_id,
                                         "account": account, "asset": asset.id,
                                         "amount": amount}})  # fmt: skip
            if who in self.agents:
                action = {"type": "approve_agent", "agent": self.agents[who], "name": "bot"}
                block.append(self._entry(who, action, agent_ok=False))
            if len(block) >= BLOCK_ENTRIES:
                blocks.append(block)
                block = []
        blocks.append(block)
        if self.perp:
            blocks.append(self.oracle())
        for b in blocks:
            self._shadow_apply(b)
        return blocks

    def oracle(self) -> list[Entry]:
        """Every member's prices (the current mids, in ticks): committee entries."""
        prices = [[m.id, self.mid[i] // m.tick_size] for i, m in enumerate(self.markets)]
        return [
            {"action": {"type": "oracle", "member": member, "prices": prices}} for member in MEMBERS
        ]

    def _add(self, stream: Stream, block: list[Entry]) -> None:
        if self.perp:
            block = block + self.oracle()
        stream.add(block)
        self._shadow_apply(block)

    def _shadow_apply(self, block: list[Entry]) -> BlockResult:
        self.ts += BLOCK_MS
        result = self.shadow.apply_block(self.ts, block)
        accounts = self.shadow.accounts
        for entry, events in zip(block, result.events, strict=True):
            if events and type(events[0]) is Accepted:
                oid = events[0].oid
                if oid in accounts[entry["account"]].orders:
                    who = int.from_bytes(entry["account"], "big") - 0x5E00
                    self.pool.append((who, events[0].market, oid, events[0].cloid))
        return result

    def stream(self, name: str, entries: int, mix: tuple[float, float], bursts: int = 0) -> Stream:
        """`mix` = (passive share, cancel share); the rest is marketable. With `bursts`,
        a quarter of the entries are cancels packed into `bursts` blocks spread out."""
        setup = self.setup()
        stream = Stream(name, setup, self.genesis)
        burst_entries = entries // 4 if bursts else 0
        regular = entries - burst_entries
        regular_blocks = -(-regular // self.block_entries)
        burst_after = {regular_blocks * (i + 1) // (bursts + 1) for i in range(bursts)}
        passive_share, cancel_share = mix
        done = 0
        for height in range(regular_blocks):
            if height in burst_after:
                cancels = (self.cancel() for _ in range(burst_entries // bursts))
                self._add(stream, [e for e in cancels if e is not None])
            block: list[Entry] = []
            for _ in range(min(self.block_entries, regular - done)):
                r = self.rng.random()
                entry = (
                    self.passive() if r < passive_share
                    else self.cancel() if r < passive_share + cancel_share
                    else None
                )  # fmt: skip
                block.append(entry or self.marketable())
            done += len(block)
            self._add(stream, block)
        stream.state_root = self.shadow.checkpoint().state_root
        return stream

    def limit_only(self, entries: int) -> Stream:
        """GTC limits (~15% of them crossing) and cancels; every place is accepted, so
        the n-th place gets oid n (asserted) and pyorderbook can mirror it."""
        setup = self.setup()
        stream = Stream("limit-only", setup, self.genesis)
        oid_base = self.shadow.next_oid
        places = 0
        done = 0
        rng = self.rng
        while done < entries:
            block: list[Entry] = []
            ops: list[PeerOp] = []
            for _ in range(min(self.block_entries, entries - done)):
                if rng.random() < 0.3 and (picked := self._pick()) is not None:
                    who, m, oid, _ = picked
                    block.append(self._entry(who, {"type": "cancel", "market": m, "oid": oid}))
                    ops.append((False, m, False, 0, 0, oid - oid_base))
                    continue
                m = rng.randrange(len(self.markets))
                tick = self.markets[m].tick_size
                if rng.random() < 0.05:
                    self.mid[m] += rng.choice((-tick, tick))
                is_buy = rng.random() < 0.5
                offset = rng.randrange(1, 40) if rng.random() < 0.85 else -rng.randrange(1, 6)
                price = self.mid[m] - offset * tick if is_buy else self.mid[m] + offset * tick
                lots = rng.randrange(1, 10)
                who = rng.randrange(len(self.accounts))
                block.append(self._place(who, m, is_buy, price, lots, "limit", "gtc"))
                ops.append((True, m, is_buy, price // tick, lots, places))
                places += 1
            done += len(block)
            self._add(stream, block)
            stream.peer_blocks.append(ops)
        assert self.shadow.next_oid - oid_base == places, "a limit-only place was rejected"
        stream.state_root = self.shadow.checkpoint().state_root
        return stream


# -- timed runs ---------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    entries: int
    seconds: float  # CPU time of the timed runs
    wall_seconds: float
    block_ms: list[float]

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds

    def block_ms_p(self, q: float) -> float:
        ordered = sorted(self.block_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(
    blocks: list[Any], prepare: Callable[[Any], Any], run: Callable[[int, Any], None]
) -> tuple[float, float, list[float]]:
    """Time `run` on each prepared block; `prepare` (decoding) is not timed. Both engines
    run with the cycle collector off: neither makes reference cycles per order, and a
    node freezes its long-lived state the same way (a full collection over millions of
    live objects is a 50-100 ms pause, which is what the p99 would otherwise show)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    # CPU time of this thread: other jobs on a shared machine delay us, they do not make
    # the engine slower; wall time is reported beside it for the record.
    clock = time.thread_time
    block_ms: list[float] = []
    seconds = wall_seconds = 0.0
    for height, raw in enumerate(blocks):
        block = prepare(raw)
        w = time.perf_counter()
        t = clock()
        run(height, block)
        elapsed = clock() - t
        wall_seconds += time.perf_counter() - w
        seconds += elapsed
        block_ms.append(elapsed * 1e3)
    gc.enable()
    gc.unfreeze()
    return seconds, wall_seconds, block_ms


def run_engine(stream: Stream) -> Result:
    engine = Engine(stream.genesis)
    ts = T0_MS
    for block in stream.setup:
        ts += BLOCK_MS
        engine.apply_block(ts, block)
    base_ts = ts

    def decode(raw: bytes) -> list[Entry]:
        block: list[Entry] = msgpack.unpackb(raw, raw=False)
        return block

    def apply(height: int, block: list[Entry]) -> None:
        engine.apply_block(base_ts + (height + 1) * BLOCK_MS, block)

    seconds, wall, block_ms = _timed(stream.blocks, decode, apply)
    root = engine.checkpoint().state_root
    assert root == stream.state_root, f"{stream.name}: the timed run diverged from the shadow"
    return Result(stream.name, stream.entries, seconds, wall, block_ms)


@dataclass
class Cascade:
    accounts: int
    liquidated: int
    backstopped: int
    block_ms: float  # CPU time of the one block


def run_cascade(accounts: int) -> Cascade:
    """`accounts` traders each long ~8x ($8,000 of BTC-PERP on $1,000) against a market
    maker; then one block in which the oracle falls 10 %, the maker requotes around the new
    price and a trade prints there: the block's end step marks every trader under
    maintenance and liquidates all of them (the maker's bids take some, the insurance fund
    the rest). Only that block is timed."""
    genesis = perp_genesis()
    market = genesis.markets[1]
    lot, tick = market.lot_size, market.tick_size
    mid = 100_000 * tick
    engine = Engine(genesis)
    ts = T0_MS
    maker, printer = _address(900_000), _address(900_001)
    nonces = itertools.count(T0_MS)
    traders = [_address(i) for i in range(accounts)]
    deposits: list[Entry] = []
    for who, amount in [(maker, 10**15), (printer, 10**13), (INSURANCE, 10**15)] + [
        (t, 10**9) for t in traders
    ]:
        deposits.append({"action": {"type": "deposit", "deposit_id": len(deposits) + 1,
                                    "account": who, "asset": 0, "amount": amount}})  # fmt: skip

    def oracle(price: int) -> list[Entry]:
        prices = [[m.id, (mid if m.id != market.id else price) // m.tick_size]
                  for m in genesis.markets]  # fmt: skip
        return [{"action": {"type": "oracle", "member": m, "prices": prices}} for m in MEMBERS]

    def place(who: bytes, side: str, price: int, lots: int, tif: str) -> Entry:
        action = {"type": "place", "market": market.id, "side": side, "kind": "limit",
                  "price": price, "size": lots * lot, "tif": tif, "reduce_only": False,
                  "cloid": None, "expires_ms": None}  # fmt: skip
        return {"account": who, "signer": who, "nonce": next(nonces), "action": action}

    def block(entries: list[Entry]) -> BlockResult:
        nonlocal ts
        ts += BLOCK_MS
        return engine.apply_block(ts, entries)

    for i in range(0, len(deposits), BLOCK_ENTRIES):
        block(deposits[i : i + BLOCK_ENTRIES])
    block(oracle(mid))
    lots = 8 * 10**9 // mid
    block([place(maker, "sell", mid, lots * accounts, "gtc")])
    for i in range(0, accounts, BLOCK_ENTRIES):
        block([place(t, "buy", mid, lots, "ioc") for t in traders[i : i + BLOCK_ENTRIES]])
    low = mid * 9 // 10 // tick * tick
    moved = [{"account": maker, "signer": maker, "nonce": next(nonces),
              "action": {"type": "cancel_all", "market": None}}]  # fmt: skip
    moved += [place(maker, "buy", low - k * tick, lots * accounts // 40, "gtc") for k in range(20)]
    moved += [place(maker, "sell", low + tick, lots, "gtc"), place(printer, "sell", low, 1, "ioc")]
    moved += oracle(low)
    gc.collect()
    gc.freeze()
    gc.disable()
    t = time.thread_time()
    result = block(moved)
    elapsed = time.thread_time() - t
    gc.enable()
    gc.unfreeze()
    names = [type(e).__name__ for e in result.end]
    return Cascade(accounts, names.count("Liquidation"), names.count("Backstop"), elapsed * 1e3)


def run_peer(stream: Stream, prebuilt: bool) -> Result:
    """The limit-only stream through pyorderbook, cancels first inside a block as in our
    engine; a cancel of an order that already left the book is skipped (we reject it).
    pyorderbook takes Order objects (a uuid4 id, a float price it turns into a Decimal):
    with `prebuilt` they are built before the timer starts, otherwise from the plain op
    inside the timed run, as our engine parses its plain entries inside the timed run.
    Prices go in as floats of two decimals (ticks / 100), the type its API declares."""
    from pyorderbook import Book, ask, bid

    symbols = [m.symbol for m in bench_genesis().markets]
    book = Book()
    live = book.order_map
    orders: list[Any] = []

    def build(ops: list[PeerOp]) -> list[tuple[bool, Any]]:
        out: list[tuple[bool, Any]] = []
        for is_place, m, is_buy, ticks, lots, index in ops:
            if is_place:
                orders.append((bid if is_buy else ask)(symbols[m], ticks / 100, lots))
                out.append((True, orders[index]))
            else:
                out.append((False, orders[index]))
        return out

    def apply_built(height: int, block: list[tuple[bool, Any]]) -> None:
        for is_place, order in block:
            if not is_place and order.id in live:
                book.cancel(order)
        for is_place, order in block:
            if is_place:
                book.match(order)

    def apply_plain(height: int, ops: list[PeerOp]) -> None:
        for is_place, _m, _is_buy, _ticks, _lots, index in ops:
            if not is_place and orders[index].id in live:
                book.cancel(orders[index])
        for is_place, m, is_buy, ticks, lots, _index in ops:
            if is_place:
                order = (bid if is_buy else ask)(symbols[m], ticks / 100, lots)
                orders.append(order)
                book.match(order)

    if prebuilt:
        seconds, wall, block_ms = _timed(stream.peer_blocks, build, apply_built)
    else:
        seconds, wall, block_ms = _timed(stream.peer_blocks, lambda ops: ops, apply_plain)
    name = "pyorderbook, orders prebuilt" if prebuilt else "pyorderbook"
    return Result(name, stream.entries, seconds, wall, block_ms)


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries per stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr)

    say(f"generating streams of {args.entries:,} entries (seed {args.seed}) ...")
    mixed_stream = Generator(args.seed, args.accounts).stream("mixed", args.entries, (0.55, 0.30))
    say("mixed ...")
    mixed = run_engine(mixed_stream)
    del mixed_stream
    burst_stream = Generator(args.seed + 1, args.accounts).stream(
        "burst", args.entries, (0.70, 0.05), bursts=5
    )
    say("burst ...")
    burst = run_engine(burst_stream)
    del burst_stream
    limit_stream = Generator(args.seed + 2, args.accounts).limit_only(args.entries)
    say("limit-only ...")
    limit_only = run_engine(limit_stream)
    say("pyorderbook ...")
    peer = run_peer(limit_stream, prebuilt=False)
    peer_prebuilt = run_peer(limit_stream, prebuilt=True)
    ratio = limit_only.entries_per_s / peer.entries_per_s
    say("perp ...")
    perp_stream = Generator(args.seed + 3, args.accounts, genesis=perp_genesis()).stream(
        "perp", args.entries, (0.55, 0.30)
    )
    perp = run_engine(perp_stream)
    del perp_stream
    say("liquidation cascade ...")
    cascade = run_cascade(args.accounts)

    out = {
        "compiled": matching.compiled(),  # mypyc build of matching/ (docs/MATCHING.md)
        "entries": args.entries,
        "seed": args.seed,
        "accounts": args.accounts,
        "markets": len(MARKETS),
        "block_entries": BLOCK_ENTRIES,
        "entries_per_s": round(mixed.entries_per_s),
        "wall_entries_per_s": round(mixed.entries / mixed.wall_seconds),
        "block_ms_p99": round(mixed.block_ms_p(0.99), 3),
        "burst_entries_per_s": round(burst.entries_per_s),
        "burst_block_ms_p99": round(burst.block_ms_p(0.99), 3),
        "burst_block_ms_max": round(max(burst.block_ms), 3),
        "limit_only_entries_per_s": round(limit_only.entries_per_s),
        "limit_only_block_ms_p99": round(limit_only.block_ms_p(0.99), 3),
        "peer_entries_per_s": round(peer.entries_per_s),
        "peer_block_ms_p99": round(peer.block_ms_p(0.99), 3),
        "ratio_vs_peer": round(ratio, 2),
        "peer_prebuilt_entries_per_s": round(peer_prebuilt.entries_per_s),
        "ratio_vs_peer_prebuilt": round(limit_only.entries_per_s / peer_prebuilt.entries_per_s, 2),
        "perp_entries_per_s": round(perp.entries_per_s),
        "perp_block_ms_p99": round(perp.block_ms_p(0.99), 3),
        "perp_ratio_vs_spot": round(perp.entries_per_s / mixed.entries_per_s, 2),
        "liquidation_cascade_ms": round(cascade.block_ms, 3),
        "cascade_accounts": cascade.accounts,
        "cascade_liquidated": cascade.liquidated,
        "cascade_backstopped": cascade.backstopped,
    }
    say("options ...")  # issue 14: Greeks and portfolio margin (node/bench/options.py)
    out.update(options_bench.figures(mixed.entries_per_s, seed=args.seed))
    if args.json:
        print(json.dumps(out))
        return 0
    build = "compiled (mypyc)" if out["compiled"] else "interpreted"
    print(f"matching engine: {build}")
    print(f"{'stream':<30}{'entries':>11}{'entries/s':>12}{'p99 block ms':>14}{'max block ms':>14}")
    for r in (mixed, burst, limit_only, perp, peer, peer_prebuilt):
        label = r.name if r.name.startswith("pyorderbook") else f"{r.name} (seqnet)"
        print(
            f"{label:<30}{r.entries:>11,}{r.entries_per_s:>12,.0f}{r.block_ms_p(0.99):>14.2f}"
            f"{max(r.block_ms):>14.2f}"
        )
    print(
        f"ratio vs pyorderbook on the limit-only stream: {ratio:.2f}x "
        f"(vs prebuilt pyorderbook orders: {out['ratio_vs_peer_prebuilt']:.2f}x)"
    )
    print(f"perp vs spot (mixed) in this run: {out['perp_ratio_vs_spot']:.2f}x")
    print(
        f"liquidation cascade: {cascade.liquidated:,} of {cascade.accounts:,} accounts "
        f"liquidated in one block of {cascade.block_ms:.1f} ms "
        f"({cascade.backstopped:,} through the insurance fund)"
    )
    print(
        f"options: {out['greeks_per_s']:,} greeks/s, {out['portfolio_margin_per_s']:,} "
        f"portfolio margins/s ({out['portfolio_positions']} positions, "
        f"{out['portfolio_scenarios']} scenarios; vs spot {out['portfolio_margin_ratio_vs_spot']}x)"
    )
    return 0
