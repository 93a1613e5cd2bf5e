"""Batch auctions give the same results compiled (mypyc) and interpreted, and as pinned.

`auction_digest` hashes every event (clearings included), checkpoint roots and the final
snapshot of a seeded bench stream (node/bench/matching.py's generator: passive and
marketable orders, cancels, modifies, agents, expiries) on the bench genesis with two of
its markets as batch auctions (every block, every 3 blocks) and the others continuous.
GOLDEN_AUCTION is that digest as batch auctions were first written (interpreted); the
continuous engine's own digests stay pinned in test_compiled.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack

from matching.config import Genesis
from matching.engine import Engine
from matching.events import AuctionCleared
from node.bench import matching as bench
from tests.matching.interpreted import interpreted_output

GOLDEN_AUCTION = "83cf0c4d07f9085bffc7acce19a9c22c8f449f130e6d5f68443af4fdd2b4f91d"


def auction_bench_genesis() -> Genesis:
    raw = bench.bench_genesis().to_dict()
    raw["markets"][0]["auction_blocks"] = 1
    raw["markets"][1]["auction_blocks"] = 3
    return Genesis.from_dict(raw)


def auction_digest(entries: int = 6_000, accounts: int = 150) -> tuple[str, int]:
    """(digest, number of clearings with trades)."""
    digest = hashlib.sha256()
    gen = bench.Generator(15, accounts, block_entries=100, genesis=auction_bench_genesis())
    stream = gen.stream("mixed", entries, (0.55, 0.30), bursts=2)
    engine = Engine(stream.genesis)
    ts = bench.T0_MS
    clearings = 0
    blocks = stream.setup + [msgpack.unpackb(raw, raw=False) for raw in stream.blocks]
    for height, block in enumerate(blocks):
        ts += bench.BLOCK_MS
        result = engine.apply_block(ts, block)
        clearings += sum(1 for e in result.end if isinstance(e, AuctionCleared))
        digest.update(
            msgpack.packb([ts, result.expired, result.events, result.end], use_bin_type=True)
        )
        if height % 5 == 0:
            checkpoint = engine.checkpoint()
            digest.update(checkpoint.state_root + checkpoint.withdrawals_root)
    digest.update(engine.snapshot())
    return digest.hexdigest(), clearings


def test_auction_behaviour_is_the_pinned_one() -> None:
    digest, clearings = auction_digest()
    assert clearings > 40
    assert digest == GOLDEN_AUCTION


def test_compiled_and_interpreted_auctions_agree(tmp_path: Path) -> None:
    out = interpreted_output(
        tmp_path,
        "from tests.matching.test_auction_compiled import auction_digest; "
        "print(auction_digest()[0])",
    )
    assert out == [auction_digest()[0]] == [GOLDEN_AUCTION]
