"""A taker on seqnet: watches the book over the stream and crosses the spread.

    python examples/taker.py --url http://127.0.0.1:8000 --key 0x… --market ETH-USDC \\
        --side buy --size 0.01 --trades 3

It keeps a local copy of the book from the /v1/stream snapshot and deltas (resyncing
by itself after a gap), and each time the best opposite level exists it sends an IOC
order at that price, until it has done `--trades` fills or `--timeout` passes.
"""

from __future__ import annotations

import argparse
import time

from seqnet_sdk import SyncClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="account (or agent) private key, 0x-hex")
    parser.add_argument("--account", help="the account an agent key trades for")
    parser.add_argument("--market", default="ETH-USDC")
    parser.add_argument("--side", choices=("buy", "sell"), default="buy")
    parser.add_argument("--size", default="0.01")
    parser.add_argument("--trades", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    with SyncClient(args.url, args.key, account=args.account) as client:
        market = client.markets().market(args.market)
        deadline = time.monotonic() + args.timeout
        filled = 0
        book: dict[int, int] = {}
        for message in client.stream(book=[market.id]):
            if message.get("channel") == "book" and message.get("type") in ("snapshot", "delta"):
                if message["type"] == "snapshot":
                    book = {}
                side = message["asks"] if args.side == "buy" else message["bids"]
                for price, size in side:
                    if size:
                        book[price] = size
                    else:
                        book.pop(price, None)
            if book:
                best = min(book) if args.side == "buy" else max(book)
                result = client.place(market.id, args.side, args.size, price_ticks=best, tif="ioc")
                if result.status == "committed":
                    filled += 1
                    print(f"took {args.size} at {market.ticks_to_price(best)}", flush=True)
                book.pop(best, None)
            if filled >= args.trades or time.monotonic() > deadline:
                break
        print(f"taker done: {filled} orders sent against the book", flush=True)
    return 0 if filled else 1


if __name__ == "__main__":
    raise SystemExit(main())
