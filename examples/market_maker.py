"""A market maker on seqnet: keeps a ladder of bids and asks around a mid price.

    python examples/market_maker.py --url http://127.0.0.1:8000 --key 0x… \\
        --market ETH-USDC --mid 3000 --spread 1 --levels 3 --size 0.01 --rounds 5

Each round cancels its quotes and posts a fresh ladder in one signed batch (post-only,
so a quote never takes), then follows its fills on the account stream for a while.
Prices and sizes are decimals; the SDK refuses any that fall off the market's grid.
Plain synchronous code: `SyncClient` runs the async client in a background thread.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from seqnet_sdk import SyncClient


def ladder(mid: Decimal, spread: Decimal, levels: int, step: Decimal) -> list[tuple[str, Decimal]]:
    quotes = []
    for i in range(levels):
        quotes.append(("buy", mid - spread / 2 - i * step))
        quotes.append(("sell", mid + spread / 2 + i * step))
    return quotes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="account (or agent) private key, 0x-hex")
    parser.add_argument("--account", help="the account an agent key trades for")
    parser.add_argument("--market", default="ETH-USDC")
    parser.add_argument("--mid", default="3000")
    parser.add_argument("--spread", default="1")
    parser.add_argument("--step", default="0.5")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--size", default="0.01")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)

    with SyncClient(args.url, args.key, account=args.account) as client:
        mid, spread, step = Decimal(args.mid), Decimal(args.spread), Decimal(args.step)
        for round_ in range(args.rounds):
            client.cancel_all(args.market)
            actions = [
                client.place_action(args.market, side, args.size, price, tif="post")
                for side, price in ladder(mid, spread, args.levels, step)
            ]
            results = client.batch(actions)
            resting = sum(r.status == "committed" for r in results)
            print(f"round {round_}: {resting}/{len(results)} quotes resting", flush=True)
            time.sleep(args.interval)
        fills = client.fills()
        print(f"fills: {len(fills)}", flush=True)
        client.cancel_all(args.market)
        print(f"open orders after cancel_all: {len(client.open_orders())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
