"""The engine's observable behaviour is pinned, and the compiled build keeps it.

`./dev setup` compiles the hot modules of matching/ with mypyc when it finds a C compiler
(docs/MATCHING.md, "Compiled build"); the same sources run interpreted otherwise. Both
must give the same events, ids, rejections, roots and snapshots, bit for bit:
`stream_digest` hashes all of them over seeded bench streams (mixed, burst, limit-only),
and GOLDEN is that digest as the engine gave it before the compiled build existed (a
deliberate change of behaviour must update it, and say so in docs/MATCHING.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack

from matching.engine import Engine
from node.bench import matching as bench
from tests.matching.interpreted import interpreted_output

GOLDEN = "a159d52e1ff275b23642b03d99e0432c5c08f712b9959bec222e050e4cc54de7"
# The perp engine as first written (interpreted), same construction: perp_digest().
GOLDEN_PERP = "8d3de9163f086d22f102624db8c73a18f97eae69e7a4f03007389de422858051"


def stream_digest(entries: int = 12_000, accounts: int = 150) -> str:
    digest = hashlib.sha256()
    streams = [  # small blocks in the mixed stream: its orders live long enough to expire
        bench.Generator(11, accounts, block_entries=100).stream("mixed", entries, (0.55, 0.30)),
        bench.Generator(12, accounts).stream("burst", entries, (0.70, 0.05), bursts=3),
        bench.Generator(13, accounts).limit_only(entries),
    ]
    for stream in streams:
        engine = Engine(bench.bench_genesis())
        ts = bench.T0_MS
        blocks = stream.setup + [msgpack.unpackb(raw, raw=False) for raw in stream.blocks]
        for height, block in enumerate(blocks):
            ts += bench.BLOCK_MS
            result = engine.apply_block(ts, block)
            digest.update(msgpack.packb([ts, result.expired, result.events], use_bin_type=True))
            if height % 5 == 0:
                checkpoint = engine.checkpoint()
                digest.update(checkpoint.state_root + checkpoint.withdrawals_root)
        digest.update(engine.snapshot())
    return digest.hexdigest()


def perp_digest(entries: int = 6_000, accounts: int = 150) -> str:
    """The same over a seeded perp stream (margin checks, fills, oracle entries, funding
    never: blocks are 50 ms apart) and a liquidation cascade's block, end events included."""
    digest = hashlib.sha256()
    gen = bench.Generator(14, accounts, block_entries=100, genesis=bench.perp_genesis())
    stream = gen.stream("perp", entries, (0.55, 0.30))
    engine = Engine(stream.genesis)
    ts = bench.T0_MS
    blocks = stream.setup + [msgpack.unpackb(raw, raw=False) for raw in stream.blocks]
    for height, block in enumerate(blocks):
        ts += bench.BLOCK_MS
        result = engine.apply_block(ts, block)
        digest.update(
            msgpack.packb([ts, result.expired, result.events, result.end], use_bin_type=True)
        )
        if height % 5 == 0:
            checkpoint = engine.checkpoint()
            digest.update(checkpoint.state_root + checkpoint.withdrawals_root)
    digest.update(engine.snapshot())
    cascade = bench.run_cascade(200)
    digest.update(repr((cascade.liquidated, cascade.backstopped)).encode())
    return digest.hexdigest()


def test_behaviour_is_the_pinned_one() -> None:
    assert stream_digest() == GOLDEN


def test_perp_behaviour_is_the_pinned_one() -> None:
    assert perp_digest() == GOLDEN_PERP


def test_compiled_and_interpreted_agree(tmp_path: Path) -> None:
    out = interpreted_output(
        tmp_path,
        "from tests.matching.test_compiled import stream_digest, perp_digest; "
        "print(stream_digest(), perp_digest())",
    )
    assert out == [stream_digest(), perp_digest()] == [GOLDEN, GOLDEN_PERP]
