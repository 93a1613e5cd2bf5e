"""The index of a batch-auction market (docs/MATCHING.md, "Batch auctions"): orders wait
in the book until the clearing at the end of the batch's last block, and every fill of a
clearing is a fill of a resting order (none is a maker's). The book mirror behind the
`book` stream and the order records must follow the clearing."""

from __future__ import annotations

import time
from dataclasses import replace

from node.api.indexer import Indexer
from node.genesis import default_exchange
from node.intents import address_of_private_key, place_action, sign_intent, verify_intent
from node.runtime import Executable
from tests.api.exchange import DOMAIN, FEE_ACCOUNT, ExchangeNode

ALICE_KEY, BOB_KEY = (0xA11CE).to_bytes(32, "big"), (0xB0B).to_bytes(32, "big")
ALICE, BOB = address_of_private_key(ALICE_KEY), address_of_private_key(BOB_KEY)
ETH, USDC = 0, 1
LOT, PRICE = 10**6, 3_000_000  # ETH-USDC: gwei per lot, micro-USDC per lot


def entry(key: bytes, nonce: int, side: str, price: int, lots: int) -> Executable:
    account = address_of_private_key(key)
    nonce += time.time_ns() // 1_000_000  # nonces are milliseconds, inside a window
    intent = sign_intent(key, account, nonce, place_action(0, side, price, lots * LOT), DOMAIN)
    e = verify_intent(intent, DOMAIN)
    return Executable(e.to_dict(), e.signer, e.intent_id)


def test_a_clearing_updates_the_book_mirror_and_the_order_records() -> None:
    exchange = default_exchange(FEE_ACCOUNT)
    markets = (replace(exchange.markets[0], auction_blocks=2), *exchange.markets[1:])
    node = ExchangeNode(replace(exchange, markets=markets))
    node.deposit(ALICE, ETH, 100 * LOT)
    node.deposit(BOB, USDC, 10**12)
    indexer = Indexer(node.engine, node.exec_height)
    node.add_block_listener(indexer.on_block)

    def mirror() -> tuple[list[list[int]], list[list[int]]]:
        snap = indexer.book_snapshot(0)
        return snap["bids"], snap["asks"]

    def engine_book() -> tuple[list[list[int]], list[list[int]]]:
        depth = indexer.depth(0, 100)
        return [lv[:2] for lv in depth["bids"]], [lv[:2] for lv in depth["asks"]]

    # Height 3 is inside the batch (cleared at even heights): both orders wait in the book.
    node.apply([entry(ALICE_KEY, 1, "sell", PRICE, 10), entry(BOB_KEY, 1, "buy", PRICE + 10, 6)])
    assert node.exec_height % 2 == 1
    assert mirror() == engine_book() == ([[PRICE + 10, 6 * LOT]], [[PRICE, 10 * LOT]])
    # The batch's last block clears 6 lots; Alice's 4 left rest for the next batch.
    node.apply([])
    assert engine_book() == ([], [[PRICE, 4 * LOT]])
    assert mirror() == engine_book()
    statuses = {r["side"]: (r["status"], r["open"]) for r in indexer.open_orders(ALICE)}
    assert statuses == {"sell": ("open", 4 * LOT)}
    assert indexer.open_orders(BOB) == []
    # The clearing's fills and trade reach the history (the end step is indexed): all at
    # the clearing price, Bob's whole order, neither side a maker, the taker fee paid.
    (fill,) = indexer.fills(BOB, 10).items
    assert (fill["price"], fill["size"], fill["maker"]) == (PRICE, 6 * LOT, False)
    assert fill["height"] == 4 and fill["fee"] > 0
    (alice_fill,) = indexer.fills(ALICE, 10).items
    assert (alice_fill["price"], alice_fill["size"], alice_fill["remaining"]) == (
        PRICE,
        6 * LOT,
        4 * LOT,
    )
    (trade,) = indexer.trades(0, 10).items
    assert (trade["price"], trade["size"], trade["taker_side"]) == (PRICE, 6 * LOT, "auction")
    (bob_order,) = indexer.order_history(BOB, 10).items
    assert (bob_order["status"], bob_order["filled"], bob_order["updated_height"]) == (
        "filled",
        6 * LOT,
        4,
    )
