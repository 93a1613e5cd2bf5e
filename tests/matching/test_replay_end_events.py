"""`seqnet replay` prints the block's end step too (auction clearings; perp prices,
funding and liquidations): before, a log of an auction market replayed to the right root
but printed none of its trades."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgpack
import pytest

from matching.engine import Engine
from node import replay
from node.bench.matching import BLOCK_MS, Generator


def test_replay_prints_the_auction_clearings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.bench.matching import bench_genesis

    base = bench_genesis()
    markets = tuple(replace(m, auction_blocks=2) for m in base.markets)
    gen = Generator(3, accounts=25, block_entries=50, genesis=replace(base, markets=markets))
    stream = gen.stream("mixed", 800, (0.5, 0.3))
    engine = Engine(gen.genesis)
    lines = [replay.genesis_line(gen.genesis)]
    trades = 0
    blocks = [*stream.setup, *(msgpack.unpackb(raw) for raw in stream.blocks)]
    ts = 1_700_000_000_000
    for height, block in enumerate(blocks, start=1):
        ts += BLOCK_MS
        result = engine.apply_block(ts, block)
        trades += sum(type(e).__name__ == "Trade" for e in result.end)
        lines.append(replay.block_line(height, ts, block, False))
    assert trades > 0, "the stream should clear some trades"
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    assert replay.main([str(log), "--json"], prog="seqnet replay") == 0
    out = capsys.readouterr().out
    assert out.count('"event":"trade"') == trades
    assert '"event":"auction"' in out
