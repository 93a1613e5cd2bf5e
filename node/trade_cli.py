"""`seqnet trade …`: trade from the command line with the SDK (seqnet_sdk).

    seqnet trade balances                              # the localnet's first node, $SEQNET_KEY
    seqnet trade place ETH-USDC buy 0.5 2999.5 [--tif post] [--cloid 7]
    seqnet trade cancel ETH-USDC 42 | --cloid 7 | --all
    seqnet trade orders [--history] [--fills] [--limit N] [--cursor C] [--start-ms T] [--end-ms T]
    seqnet trade trades ETH-USDC | deposits | withdrawals   # history, same paging options
    seqnet trade candles ETH-USDC [--interval 1h] | stats ETH-USDC
    seqnet trade book ETH-USDC [--depth 10] [--watch]  # --watch: live view (rich)
    seqnet trade deposit USDC 1000                     # on chain, then credited by the committee
    seqnet trade withdraw USDC 250 [--claim]           # --claim: wait for the checkpoint, claim
    seqnet trade claim 7                               # claim withdrawal 7 on chain
    seqnet trade agent approve 0x… bot-1               # let an API key trade for the account
    seqnet trade agent revoke 0x…                      # and take that right back

Perpetual futures (orders as above: `place BTC-PERP buy 0.01 97000 [--reduce-only]`):

    seqnet trade positions | margin                    # positions; the margin summary
    seqnet trade prices [BTC-PERP]                     # index, mark, funding, oracle
    seqnet trade funding [BTC-PERP]                    # payments (or the market's rates)
    seqnet trade liquidations [--market BTC-PERP]      # the account's (or the market's)
    seqnet trade set-leverage BTC-PERP 5 [--isolated]
    seqnet trade add-margin BTC-PERP 100 | remove-margin BTC-PERP 50

Options (orders as above on a series: `place BTC-07DEC26-97000-C buy 1 2500`):

    seqnet trade options [SERIES] [--json]             # series: mark IV, mark, Greeks
    seqnet trade option-positions [--json]             # holdings, their Greeks and totals
    seqnet trade option-margin [--json]                # mode, equity, margins, scenarios
    seqnet trade option-margin-mode portfolio|standard

The node is `--api URL`, else the first node of the localnet in `--localnet DIR`
(default .localnet). The key is `--key 0x…` or $SEQNET_KEY (an agent key with
`--account`). Deposits go to the chain in `--chain URL`, else the localnet's chain.json;
the settlement contract and token addresses come from the node.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from seqnet_sdk import ApiError, OffGrid, SyncClient
from seqnet_sdk.stream import LocalBook
from seqnet_sdk.units import MarketInfo, to_decimal

DEFAULT_LOCALNET = Path(".localnet")


def _api_url(args: argparse.Namespace) -> str:
    if args.api:
        return str(args.api)
    state = Path(args.localnet) / "localnet.json"
    if not state.exists():
        raise SystemExit(f"no --api and no localnet in {args.localnet} (start one: localnet up)")
    return str(json.loads(state.read_text())["nodes"][0]["api"])


def _key(args: argparse.Namespace) -> str:
    key = args.key or os.environ.get("SEQNET_KEY")
    if not key:
        raise SystemExit("give --key 0x… or set SEQNET_KEY")
    return str(key)


def _print_json(value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)  # an IntentResult: its fields, not its repr
    print(json.dumps(value, indent=2, default=str))


def _book_table(market: MarketInfo, book: LocalBook, depth: int) -> Any:
    from rich.table import Table

    bids, asks = book.levels(depth)
    table = Table(title=f"{market.symbol}  height {book.height}  seq {book.seq}")
    for column in ("bid size", "bid", "ask", "ask size"):
        table.add_column(column, justify="right")
    for i in range(max(len(bids), len(asks))):
        row = ["", "", "", ""]
        if i < len(bids):
            row[0] = str(market.units_to_size(bids[i][1]))
            row[1] = f"[green]{market.ticks_to_price(bids[i][0])}"
        if i < len(asks):
            row[2] = f"[red]{market.ticks_to_price(asks[i][0])}"
            row[3] = str(market.units_to_size(asks[i][1]))
        table.add_row(*row)
    return table


def _book(client: SyncClient, args: argparse.Namespace) -> int:
    market = client.markets().market(args.market)
    if not args.watch:
        raw = client.book(market.id, args.depth)
        book = LocalBook(market.id, raw["seq"], raw["height"])
        book.bids = {p: s for p, s, _ in raw["bids"]}
        book.asks = {p: s for p, s, _ in raw["asks"]}
        from rich.console import Console

        Console().print(_book_table(market, book, args.depth))
        return 0
    from rich.live import Live

    book = LocalBook(market.id)
    with Live(_book_table(market, book, args.depth), auto_refresh=False) as live:
        for message in client.stream(book=[market.id]):
            if message.get("channel") != "book":
                continue
            if message["type"] == "snapshot":
                book.apply_snapshot(message)
            elif message["type"] == "delta" and not book.apply_delta(message):
                book.stale = True  # the SDK stream resubscribes; its snapshot follows
            live.update(_book_table(market, book, args.depth), refresh=True)
    return 0


def _deposit(client: SyncClient, args: argparse.Namespace) -> int:
    from node.chain.localchain import ChainSetup, deposit
    from node.intents import parse_address

    asset = client.markets().asset(args.asset)
    if asset.decimals is None:
        raise SystemExit(f"the node does not know {asset.symbol}'s decimals")
    amount = to_decimal(args.amount, "amount").scaleb(asset.decimals)
    if amount != amount.to_integral_value() or amount <= 0 or amount % asset.unit:
        raise SystemExit(f"{args.amount} {asset.symbol} is not a whole number of engine units")
    chain_url = args.chain or ChainSetup.load(Path(args.localnet)).url
    contract: bytes = client.domain().verifying_contract
    deposit_id = deposit(
        chain_url,
        bytes.fromhex(_key(args).removeprefix("0x")),
        parse_address(asset.token),
        int(amount),
        contract=contract,
    )
    print(f"deposit {deposit_id}: {args.amount} {asset.symbol} (credited once confirmed)")
    return 0


def _page_query(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "limit": args.limit,
        "cursor": args.cursor,
        "start_ms": args.start_ms,
        "end_ms": args.end_ms,
    }


def _print_page(
    client: SyncClient, kind: str, of: Any, args: argparse.Namespace, label: str | None = None
) -> int:
    found = client.page(kind, of, **_page_query(args))
    _print_json({label or kind: found.items, "next_cursor": found.next_cursor})
    return 0


def _claim(client: SyncClient, args: argparse.Namespace, withdrawal_id: int) -> int:
    """Wait until the withdrawal's checkpoint landed, send its claim call, report."""
    from contracts.settlement import Reverted, transact
    from node.chain.localchain import ChainSetup, connect

    print(f"withdrawal {withdrawal_id}: waiting for its checkpoint to land …", file=sys.stderr)
    call = client.wait_claimable(withdrawal_id, args.timeout)
    if call["status"] == "claimed":
        _print_json({"withdrawal_id": withdrawal_id, "status": "claimed", "already": True})
        return 0
    chain_url = args.chain or ChainSetup.load(Path(args.localnet)).url
    key = bytes.fromhex(_key(args).removeprefix("0x"))
    contract = bytes.fromhex(call["contract"][2:])
    try:
        tx = transact(connect(chain_url), key, contract, bytes.fromhex(call["calldata"][2:]))
    except Reverted as exc:
        print(f"claim of withdrawal {withdrawal_id} reverted: {exc}", file=sys.stderr)
        return 1
    args_ = call["args"]
    _print_json(
        {
            "withdrawal_id": withdrawal_id,
            "status": "claimed",
            "sequence": args_["sequence"],
            "account": args_["account"],
            "token": args_["token"],
            "amount": args_["amount"],
            "tx_hash": "0x" + tx.tx_hash.hex(),
            "block": tx.block_number,
        }
    )
    return 0


PERP_COMMANDS = (
    "positions", "margin", "prices", "funding", "liquidations", "set-leverage", "add-margin",
    "remove-margin",
)  # fmt: skip


def _perp(client: SyncClient, args: argparse.Namespace) -> int:
    cmd = args.cmd
    if cmd == "positions":
        _print_json(client.positions())
        return 0
    if cmd == "margin":
        _print_json(client.margin())
        return 0
    if cmd == "prices":
        _print_json(client.prices(args.market))
        return 0
    if cmd == "funding":
        if args.market is not None:
            return _print_page(client, "funding_rates", args.market, args, "funding")
        return _print_page(client, "funding", None, args)
    if cmd == "liquidations":
        if args.market is not None:
            return _print_page(client, "market_liquidations", args.market, args, "liquidations")
        return _print_page(client, "liquidations", None, args)
    if cmd == "set-leverage":
        result = client.set_leverage(args.market, args.leverage, isolated=args.isolated)
    elif cmd == "add-margin":
        result = client.add_margin(args.market, args.amount)
    else:
        result = client.remove_margin(args.market, args.amount)
    _print_json(result)
    return 0 if result.ok else 1


OPTION_COMMANDS = ("options", "option-positions", "option-margin", "option-margin-mode")
E18 = Decimal(10) ** 18
GREEK_COLUMNS = ("delta", "gamma (F·Γ)", "vega (per 1.00 vol)", "theta (per year)")


def _collateral(exponent: int, units: int | str | None) -> Decimal | None:
    """Collateral engine units (an int, or × 10¹⁸ as a decimal string) as a human amount
    of the option markets' collateral, whose engine unit is 10^-exponent."""
    if units is None:
        return None
    value = Decimal(units) / E18 if isinstance(units, str) else Decimal(units)
    return value.scaleb(-exponent).quantize(Decimal(1).scaleb(-min(exponent, 6)))


def _collateral_exponent(client: SyncClient, series: list[dict[str, Any]]) -> int:
    """The exponent of the option series' collateral (the quote asset of every series)."""
    if not series:
        raise SystemExit("the exchange has no option series")
    exponent: int = client.markets().market(series[0]["market"]).quote.exponent
    return exponent


def _greek_cells(exponent: int, greeks: dict[str, str] | None) -> list[str]:
    """delta (per unit of forward), gamma (F·Γ), vega (per 1.00 of vol) and theta (per
    year) in human units: the API's × 10¹⁸ integers divided out."""
    if greeks is None:
        return ["-"] * 4
    q = Decimal("0.0001")
    return [
        str((Decimal(greeks["delta"]) / E18).quantize(q)),
        str((Decimal(greeks["gamma"]) / E18).quantize(q)),
        str(_collateral(exponent, greeks["vega"])),
        str(_collateral(exponent, greeks["theta"])),
    ]


def _vol(vol_e9: int) -> str:
    return f"{Decimal(vol_e9) / 10**7:.2f}%"


def _console() -> Any:
    """A rich console; piped or captured, wide enough for the option tables' columns."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _options(client: SyncClient, args: argparse.Namespace) -> int:
    from rich.table import Table

    cmd = args.cmd
    if cmd == "option-margin-mode":
        result = client.set_option_margin(args.mode)
        _print_json(result)
        return 0 if result.ok else 1
    every = client.options()
    if cmd == "options":
        found = client.options(args.series) if args.series else every
        rows = [found] if args.series else found
        if args.json:
            _print_json(found)
            return 0
        exponent = _collateral_exponent(client, every)
        table = Table(title="option series (mark, Greeks per lot)")
        for column in ("series", "strike", "expiry (UTC)", "forward", "mark IV", "IV from",
                       "committee IV", "mark", *GREEK_COLUMNS):  # fmt: skip
            table.add_column(column, justify="right")
        for s in rows:
            forward = None if s["forward"] is None else _collateral(exponent, s["forward"])
            table.add_row(
                s["symbol"],
                str(_collateral(exponent, s["strike"])),
                _utc(s["expiry_ms"]),
                "-" if forward is None else str(forward),
                _vol(s["mark_vol_e9"]),
                s["vol_source"],
                _vol(s["committee_vol_e9"]),
                "settled" if s["settled"] else str(_collateral(exponent, s["mark"])),
                *_greek_cells(exponent, s["greeks"]),
            )
        _console().print(table)
        return 0
    found = client.option_account()
    if args.json:
        _print_json(found)
        return 0
    exponent = _collateral_exponent(client, every)
    if cmd == "option-positions":
        table = Table(title=f"{found['account']} option positions (Greeks per position)")
        for column in ("series", "size", "premium", "mark", "value", *GREEK_COLUMNS):
            table.add_column(column, justify="right")
        for h in found["holdings"]:
            table.add_row(
                h["symbol"],
                str(h["size"]),
                str(_collateral(exponent, h["premium"])),
                str(_collateral(exponent, h["mark"])),
                str(_collateral(exponent, h["value"])),
                *_greek_cells(exponent, h["greeks"]),
            )
        table.add_row("total", "", "", "", "", *_greek_cells(exponent, found["greeks"]))
        _console().print(table)
        return 0
    console = _console()
    equity, initial = found["equity"], found["initial_margin"]
    maintenance = found["maintenance_margin"]
    console.print(
        f"{found['account']}  mode {found['margin_mode']}  equity {_collateral(exponent, equity)}"
        f"  initial {_collateral(exponent, initial)}"
        f"  maintenance {_collateral(exponent, maintenance)}"
    )
    markets = client.markets()
    for block in found["scenarios"]:
        rows = block["scenarios"]
        worst = min(range(len(rows)), key=lambda i: rows[i]["pnl"]) if rows else -1
        table = Table(title=f"scenarios of {markets.market(block['underlying']).symbol}")
        for column in ("underlying move", "vol shift", "P&L"):
            table.add_column(column, justify="right")
        for i, row in enumerate(rows):
            pnl = str(_collateral(exponent, row["pnl"]))
            table.add_row(
                f"{row['move_bps'] / 100:+.2f}%",
                f"{row['vol_shift_e9'] / 10**7:+.2f} vol pts",
                f"[bold red]{pnl} (worst)" if i == worst else pnl,
            )
        console.print(table)
    return 0


def _utc(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _run(client: SyncClient, args: argparse.Namespace) -> int:
    cmd = args.cmd
    if cmd == "place":
        result = client.place(
            args.market,
            args.side,
            args.size,
            args.price,
            kind=args.kind,
            tif=args.tif,
            cloid=args.cloid,
            reduce_only=args.reduce_only,
            encrypted=args.encrypted,
        )
        _print_json(result)
        return 0 if result.ok else 1
    if cmd == "cancel":
        if args.all:
            result = client.cancel_all(args.market)
        elif args.cloid is not None:
            result = client.cancel_by_cloid(args.market, args.cloid, encrypted=args.encrypted)
        elif args.oid is not None:
            result = client.cancel(args.market, args.oid, encrypted=args.encrypted)
        else:
            raise SystemExit("give an order id, --cloid N or --all")
        _print_json(result)
        return 0 if result.ok else 1
    if cmd == "orders":
        if args.fills:
            return _print_page(client, "fills", None, args)
        if args.history:
            return _print_page(client, "orders", None, args)
        _print_json(client.open_orders())
        return 0
    if cmd == "trades":
        return _print_page(client, "trades", args.market, args)
    if cmd in ("deposits", "withdrawals"):
        return _print_page(client, cmd, None, args)
    if cmd == "candles":
        _print_json(
            client.candles(
                args.market,
                args.interval,
                start_ms=args.start_ms,
                end_ms=args.end_ms,
                limit=args.limit,
            )
        )
        return 0
    if cmd == "stats":
        _print_json(client.stats(args.market))
        return 0
    if cmd == "claim":
        return _claim(client, args, args.withdrawal_id)
    if cmd == "balances":
        from rich.console import Console
        from rich.table import Table

        table = Table(title=client.address)
        for column in ("asset", "available", "locked"):
            table.add_column(column, justify="right")
        for symbol, balance in client.balances().items():
            table.add_row(symbol, str(balance["available"]), str(balance["locked"]))
        Console().print(table)
        return 0
    if cmd == "book":
        return _book(client, args)
    if cmd == "deposit":
        return _deposit(client, args)
    if cmd == "withdraw":
        result = client.withdraw(args.asset, args.amount)
        _print_json(result)
        if not args.claim or not result.ok:
            return 0 if result.ok else 1
        if result.withdrawal_id is None:
            raise SystemExit("the node did not say the withdrawal id (wait for committed)")
        return _claim(client, args, result.withdrawal_id)
    if cmd in PERP_COMMANDS:
        return _perp(client, args)
    if cmd in OPTION_COMMANDS:
        return _options(client, args)
    if cmd == "agent":
        if args.what == "approve":
            if args.name is None:
                raise SystemExit("agent approve needs a name: agent approve 0x… NAME")
            result = client.approve_agent(args.agent, args.name)
        else:
            if args.name is not None:
                raise SystemExit("agent revoke takes only the agent address")
            result = client.revoke_agent(args.agent)
        _print_json(result)
        return 0 if result.ok else 1
    raise AssertionError(cmd)


_ENCRYPTED_HELP = "seal it to the committee key: no member reads it before it is ordered"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--api", help="node API URL (default: the localnet's first node)")
    parser.add_argument("--localnet", default=str(DEFAULT_LOCALNET), help="localnet folder")
    parser.add_argument("--key", help="private key, 0x-hex (default $SEQNET_KEY)")
    parser.add_argument("--account", help="the account an agent key trades for")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("place", help="place an order (decimal price and size)")
    p.add_argument("market")
    p.add_argument("side", choices=("buy", "sell"))
    p.add_argument("size")
    p.add_argument("price", help="limit price (a market order's worst price)")
    p.add_argument("--kind", choices=("limit", "market"), default="limit")
    p.add_argument("--tif", choices=("gtc", "ioc", "fok", "post"))
    p.add_argument("--cloid", type=int)
    p.add_argument("--reduce-only", action="store_true", help="perps: only reduce (ioc/fok)")
    p.add_argument("--encrypted", action="store_true", help=_ENCRYPTED_HELP)
    p = sub.add_parser("cancel", help="cancel by id, client id, or all")
    p.add_argument("market", nargs="?")
    p.add_argument("oid", type=int, nargs="?")
    p.add_argument("--cloid", type=int)
    p.add_argument("--all", action="store_true")
    p.add_argument("--encrypted", action="store_true", help=_ENCRYPTED_HELP)
    p = sub.add_parser("orders", help="open orders (or --history, --fills)")
    p.add_argument("--history", action="store_true")
    p.add_argument("--fills", action="store_true")
    _paging(p)
    p = sub.add_parser("trades", help="a market's trades, most recent first")
    p.add_argument("market")
    _paging(p)
    _paging(sub.add_parser("deposits", help="the account's deposits (chain tx, confirmations)"))
    _paging(sub.add_parser("withdrawals", help="the account's withdrawals and their status"))
    p = sub.add_parser("candles", help="OHLCV candles, oldest first")
    p.add_argument("market")
    p.add_argument("--interval", choices=("1m", "5m", "15m", "1h", "4h", "1d"), default="1h")
    _paging(p)
    p = sub.add_parser("stats", help="a market's last 24 h")
    p.add_argument("market")
    p = sub.add_parser("claim", help="claim a withdrawal on chain once its checkpoint landed")
    p.add_argument("withdrawal_id", type=int)
    _claiming(p)
    sub.add_parser("balances", help="available and locked per asset")
    p = sub.add_parser("book", help="order book (--watch: live)")
    p.add_argument("market")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--watch", action="store_true")
    p = sub.add_parser("deposit", help="deposit on chain (approves ERC-20 first)")
    p.add_argument("asset")
    p.add_argument("amount")
    p.add_argument("--chain", help="chain JSON-RPC URL (default: the localnet's chain.json)")
    p = sub.add_parser("withdraw", help="withdraw (claim on chain after a checkpoint)")
    p.add_argument("asset")
    p.add_argument("amount")
    p.add_argument("--claim", action="store_true", help="wait until it lands, then claim it")
    _claiming(p)
    p = sub.add_parser("agent", help="approve or revoke an agent (API) key; the account signs")
    p.add_argument("what", choices=("approve", "revoke"))
    p.add_argument("agent", help="the agent's address, 0x…")
    p.add_argument("name", nargs="?", help="a label for the agent (approve only, ≤ 32 bytes)")
    _perp_parsers(sub)
    _option_parsers(sub)
    return parser


def _option_parsers(sub: Any) -> None:
    p = sub.add_parser("options", help="option series: mark IV (book or committee), Greeks")
    p.add_argument("series", nargs="?", help="one series (default: all)")
    p.add_argument("--json", action="store_true", help="the API's answer, unconverted")
    p = sub.add_parser("option-positions", help="option holdings with their Greeks and totals")
    p.add_argument("--json", action="store_true", help="the API's answer, unconverted")
    p = sub.add_parser("option-margin", help="option margin: mode, requirements, scenario P&L")
    p.add_argument("--json", action="store_true", help="the API's answer, unconverted")
    p = sub.add_parser("option-margin-mode", help="portfolio (risk matrix) or standard margin")
    p.add_argument("mode", choices=("portfolio", "standard"))


def _perp_parsers(sub: Any) -> None:
    sub.add_parser("positions", help="perp positions (PnL, margin mode, liquidation price)")
    sub.add_parser("margin", help="margin summary: equity, requirements, free collateral")
    p = sub.add_parser("prices", help="a perp market's index, mark, funding and oracle")
    p.add_argument("market", nargs="?", help="default: every perp market")
    p = sub.add_parser("funding", help="funding payments (with MARKET: the market's rates)")
    p.add_argument("market", nargs="?")
    _paging(p)
    p = sub.add_parser("liquidations", help="the account's liquidation records (or a market's)")
    p.add_argument("--market")
    _paging(p)
    p = sub.add_parser("set-leverage", help="a perp market's leverage and margin mode")
    p.add_argument("market")
    p.add_argument("leverage", type=int)
    p.add_argument("--isolated", action="store_true", help="isolated margin (default cross)")
    for name, what in (("add-margin", "into"), ("remove-margin", "out of")):
        p = sub.add_parser(name, help=f"move collateral {what} an isolated position")
        p.add_argument("market")
        p.add_argument("amount", help="collateral, human units (e.g. 100.5)")


def _paging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=50, help="at most this many (≤ 1000)")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.add_argument("--start-ms", type=int, help="from this block time (ms, inclusive)")
    p.add_argument("--end-ms", type=int, help="to this block time (ms, exclusive)")


def _claiming(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chain", help="chain JSON-RPC URL (default: the localnet's chain.json)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for landing")


def main(argv: list[str], prog: str = "seqnet trade") -> int:
    args = _parser(prog).parse_args(argv)
    try:
        with SyncClient(_api_url(args), _key(args), account=args.account) as client:
            return _run(client, args)
    except (ApiError, OffGrid, KeyError, ValueError, TimeoutError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
