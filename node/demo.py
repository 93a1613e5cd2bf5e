"""`seqnet demo`: run the matching engine on a small sample stream; print book and fills.

The stream exercises resting orders, a market order sweeping levels, IOC, FOK, post-only,
self-trade prevention, modify and cancel. `--log FILE` also writes it as a replay log
(docs/PROTOCOL.md §4), so `seqnet replay FILE` reproduces the same events and root.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from matching.config import Genesis
from matching.engine import Engine
from matching.events import Event, Fill, Rejected, Trade, to_plain
from node.replay import block_line, genesis_line

T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
USDC, ETH = 0, 1
MARKET = 0
LOT = 10_000  # 0.01 ETH in micro-ETH: with prices in cents per lot, the price reads USD/ETH
NAMES = {"alice": 1, "bob": 2, "carol": 3, "dave": 4}
ADDRESSES = {name: bytes([n]) * 20 for name, n in NAMES.items()}
WHO = {address: name for name, address in ADDRESSES.items()}
FEE_ACCOUNT = bytes([0xFE]) * 20

GENESIS = {
    "fee_account": "0x" + FEE_ACCOUNT.hex(),
    "assets": [
        {"id": USDC, "symbol": "USDC", "token": "0x" + "a0" * 20, "unit": 10**4},  # cents
        {"id": ETH, "symbol": "ETH", "token": "0x" + "00" * 20, "unit": 10**12},  # micro-ETH
    ],
    "markets": [
        {"id": MARKET, "symbol": "ETH-USDC", "base": ETH, "quote": USDC, "lot_size": LOT,
         "tick_size": 1, "maker_fee_bps": 2, "taker_fee_bps": 5},
    ],
}  # fmt: skip


def eth(amount: float) -> int:
    return round(amount * 10**6)


class Script:
    """Builds the sample stream: blocks of plain entries with fresh nonces."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, int, list[dict[str, Any]]]] = []
        self.nonce = T0_MS
        self.deposit_id = 0

    def block(self, title: str, *entries: dict[str, Any]) -> None:
        self.blocks.append((title, T0_MS + 1_000 * len(self.blocks), list(entries)))

    def deposit(self, who: str, asset: int, amount: int) -> dict[str, Any]:
        self.deposit_id += 1
        action = {"type": "deposit", "deposit_id": self.deposit_id,
                  "account": ADDRESSES[who], "asset": asset, "amount": amount}  # fmt: skip
        return {"action": action}

    def signed(self, who: str, action: dict[str, Any]) -> dict[str, Any]:
        self.nonce += 1
        address = ADDRESSES[who]
        return {"account": address, "signer": address, "nonce": self.nonce, "action": action}

    def place(self, who: str, side: str, price: int, size: float, tif: str = "gtc",
              kind: str = "limit", cloid: int | None = None) -> dict[str, Any]:  # fmt: skip
        action = {"type": "place", "market": MARKET, "side": side, "kind": kind,
                  "price": price, "size": eth(size), "tif": tif, "reduce_only": False,
                  "cloid": cloid, "expires_ms": None}  # fmt: skip
        return self.signed(who, action)


def sample() -> Script:
    s = Script()
    s.block(
        "deposits",
        *(s.deposit(who, USDC, 10_000_000) for who in NAMES),  # 100,000 USDC each
        *(s.deposit(who, ETH, eth(20)) for who in NAMES),
    )
    s.block(
        "makers build the book",
        s.place("bob", "sell", 3001, 0.5),
        s.place("bob", "sell", 3002, 1.0),
        s.place("carol", "sell", 3002, 0.7, cloid=7),
        s.place("carol", "sell", 3005, 2.0),
        s.place("alice", "buy", 2999, 1.2),
        s.place("alice", "buy", 2998, 0.8),
        s.place("dave", "buy", 2995, 3.0, tif="post"),
    )
    s.block(
        "dave sweeps with a market buy (worst price 3004); a post-only that would cross",
        s.place("dave", "buy", 3004, 2.0, kind="market", tif="ioc"),
        s.place("alice", "buy", 3005, 0.1, tif="post"),
    )
    s.block(
        "alice sells IOC: self-trade prevention cancels her own bids, dave's bid fills; "
        "carol's cancel ran first; bob's FOK is too big",
        s.place("alice", "sell", 2990, 1.5, tif="ioc"),
        s.signed("carol", {"type": "cancel_cloid", "market": MARKET, "cloid": 7}),
        s.place("bob", "buy", 3005, 5.0, tif="fok"),
    )
    s.block(
        "alice sells into dave's bid; dave modifies his (priority lost); alice withdraws",
        s.place("alice", "sell", 2995, 0.5),
        s.signed(
            "dave", {"type": "modify", "market": MARKET, "oid": 7, "price": 2996, "size": eth(2.0)}
        ),
        s.signed("alice", {"type": "withdraw", "asset": USDC, "amount": 1_000_000}),
    )
    return s


def _fmt_size(units: int) -> str:
    return f"{units / 10**6:.2f}"


def _book_table(engine: Engine) -> Table:
    book = engine.books[MARKET]
    table = Table(title="ETH-USDC book", show_lines=False)
    table.add_column("bid orders", justify="right")
    table.add_column("bid ETH", justify="right", style="green")
    table.add_column("price", justify="center")
    table.add_column("ask ETH", justify="left", style="red")
    table.add_column("ask orders", justify="left")
    for price, size, count in reversed(book.depth(False, 8)):
        table.add_row("", "", f"{price:,}", _fmt_size(size), str(count))
    for price, size, count in book.depth(True, 8):
        table.add_row(str(count), _fmt_size(size), f"{price:,}", "", "")
    return table


def _fills_table(fills: list[tuple[Trade, Fill, Fill]]) -> Table:
    table = Table(title="trades")
    for column in ("trade", "price", "ETH", "taker", "side", "maker", "taker fee", "maker fee"):
        table.add_column(column, justify="right")
    for trade, taker, maker in fills:
        table.add_row(
            str(trade.trade_id), f"{trade.price:,}", _fmt_size(trade.size), WHO[taker.account],
            trade.taker_side, WHO[maker.account], f"{taker.fee / 100:.2f}",
            f"{maker.fee / 100:.2f}",
        )  # fmt: skip
    return table


def _describe(event: Event) -> str:
    plain = to_plain(event)
    kind = plain.pop("event")
    for key in ("account", "agent"):
        if key in plain:
            plain[key] = WHO.get(bytes.fromhex(plain[key][2:]), plain[key])
    style = "red" if isinstance(event, Rejected) else "cyan"
    fields = " ".join(f"{k}={v}" for k, v in plain.items())
    return f"[{style}]{kind}[/{style}] {fields}"


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--log", type=Path, help="also write the stream as a replay log")
    parser.add_argument("--events", action="store_true", help="print every event")
    args = parser.parse_args(argv)
    console = Console()
    genesis = Genesis.from_dict(GENESIS)
    engine = Engine(genesis)
    script = sample()
    lines = [genesis_line(genesis)]
    fills: list[tuple[Trade, Fill, Fill]] = []
    for height, (title, ts, entries) in enumerate(script.blocks, start=1):
        result = engine.apply_block(ts, entries)
        lines.append(block_line(height, ts, entries))
        console.rule(f"block {height}: {title}")
        for index, events in enumerate(result.events):
            trades = [e for e in events if isinstance(e, Trade)]
            sides = [e for e in events if isinstance(e, Fill)]
            fills.extend((t, sides[2 * i], sides[2 * i + 1]) for i, t in enumerate(trades))
            for event in events:
                if args.events or type(event).__name__ != "BalanceChanged":
                    console.print(f"  {index}: {_describe(event)}", highlight=False)
        if height >= 2:
            console.print(_book_table(engine))
    console.rule("result")
    console.print(_fills_table(fills))
    balances = Table(title="balances (available / locked)")
    for column in ("account", "USDC", "ETH"):
        balances.add_column(column, justify="right")
    for name, address in (*ADDRESSES.items(), ("fees", FEE_ACCOUNT)):
        (ua, ul), (ea, el) = engine.balance(address, USDC), engine.balance(address, ETH)
        balances.add_row(name, f"{ua / 100:,.2f} / {ul / 100:,.2f}",
                         f"{_fmt_size(ea)} / {_fmt_size(el)}")  # fmt: skip
    console.print(balances)
    checkpoint = engine.checkpoint()
    console.print(f"checkpoint {checkpoint.sequence}: state root 0x{checkpoint.state_root.hex()}")
    console.print(f"withdrawals root 0x{checkpoint.withdrawals_root.hex()}")
    if args.log is not None:
        args.log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        console.print(f"wrote {args.log}; `seqnet replay {args.log}` prints the same root")
    return 0
