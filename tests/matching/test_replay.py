"""Snapshot/restore and `seqnet replay`: same input, same events and roots, bit for bit."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.engine import Engine
from matching.events import AgentRevoked, Reason
from matching.snapshot import SnapshotError
from node import demo, replay
from node.bench.matching import BLOCK_MS, Generator
from tests.matching.helpers import (
    AGENT,
    ALICE,
    USDC,
    Harness,
    approve,
    cancel_all,
    genesis,
    revoke,
)


def generated(seed: int = 5, entries: int = 1_500) -> tuple[Generator, list[tuple[int, Any]]]:
    """A bench stream (all order types) as (timestamp, entries) blocks, setup included."""
    gen = Generator(seed, accounts=25, block_entries=50)
    stream = gen.stream("mixed", entries, (0.5, 0.3), bursts=1)
    ts = 1_700_000_000_000
    blocks = []
    for block in stream.setup:
        ts += BLOCK_MS
        blocks.append((ts, block))
    for raw in stream.blocks:
        ts += BLOCK_MS
        blocks.append((ts, msgpack.unpackb(raw)))
    return gen, blocks


def test_restore_midway_continues_identically() -> None:
    gen, blocks = generated()
    original = Engine(gen.genesis)
    half = len(blocks) // 2
    for ts, block in blocks[:half]:
        original.apply_block(ts, block)
    original.checkpoint()
    copy = Engine.restore(original.snapshot())
    assert copy.snapshot() == original.snapshot()
    for ts, block in blocks[half:]:
        assert copy.apply_block(ts, block) == original.apply_block(ts, block)
    assert copy.checkpoint() == original.checkpoint()
    assert copy.digest() == original.digest()


def test_snapshot_carries_integers_beyond_64_bits() -> None:
    h = Harness()
    for _ in range(3):
        h.fund(ALICE, USDC, 2**64 - 1)
    data = h.engine.snapshot()
    assert Engine.restore(data).balance(ALICE, USDC) == (3 * (2**64 - 1), 0)
    assert Engine.restore(data).checkpoint() == h.engine.checkpoint()


def test_snapshot_carries_revoked_agents_and_their_nonces() -> None:
    h = Harness()
    h.one(ALICE, approve(AGENT))
    signed = h.entry(ALICE, cancel_all(), signer=AGENT)
    h.block([signed])
    assert h.one(ALICE, revoke(AGENT)) == [AgentRevoked(ALICE, AGENT)]
    data = h.engine.snapshot()
    copy = Engine.restore(data)
    assert copy.snapshot() == data
    assert not copy.is_authorized(ALICE, AGENT)
    assert list(copy.accounts[ALICE].agent_nonces[AGENT]) == [signed["nonce"]]
    again = h.entry(ALICE, approve(AGENT))
    for engine in (copy, h.engine):  # re-approved: the old intent still cannot replay
        ts = h.ts + 1
        assert engine.apply_block(ts, [again]).events[0][0].agent == AGENT  # type: ignore[union-attr]
        assert engine.apply_block(ts, [signed]).events[0][0].code == Reason.NONCE_REUSED  # type: ignore[union-attr]
    assert copy.digest() == h.engine.digest()


def test_corrupt_snapshot_is_refused() -> None:
    with pytest.raises(SnapshotError):
        Engine.restore(b"\x01\x02")
    with pytest.raises(SnapshotError):
        Engine.restore(msgpack.packb({"version": 1, "genesis": genesis().to_dict()}))


def write_log(path: Path, with_genesis: bool = True) -> Engine:
    gen, blocks = generated(seed=9, entries=800)
    engine = Engine(gen.genesis)
    lines = [replay.genesis_line(gen.genesis)] if with_genesis else []
    for height, (ts, block) in enumerate(blocks, start=1):
        engine.apply_block(ts, block)
        checkpoint = height % 7 == 0
        if checkpoint:
            engine.checkpoint()
        lines.append(replay.block_line(height, ts, block, checkpoint))
    path.write_text("\n".join(lines) + "\n")
    return engine


def test_replay_is_deterministic_and_matches_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    engine = write_log(log)
    assert replay.main([str(log), "--json"], prog="seqnet replay") == 0
    first = capsys.readouterr().out
    assert replay.main([str(log), "--json"], prog="seqnet replay") == 0
    assert capsys.readouterr().out == first
    final = engine.checkpoint()
    assert first.splitlines()[-1].count("0x" + final.state_root.hex()) == 1
    assert '"event":"trade"' in first and '"checkpoint":2' in first


def test_replay_with_separate_genesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, genesis_file = tmp_path / "log.jsonl", tmp_path / "genesis.json"
    engine = write_log(log, with_genesis=False)
    genesis_file.write_text(json.dumps(engine.genesis.to_dict()))
    assert replay.main([str(log)], prog="seqnet replay") == 1  # no genesis
    assert replay.main([str(log), "--genesis", str(genesis_file)], prog="seqnet replay") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "state_root 0x" + engine.checkpoint().state_root.hex()


@pytest.mark.parametrize(
    "lines",
    [
        ["not json"],
        ['{"height": 1, "timestamp_ms": 5}'],
        [
            '{"height": 1, "timestamp_ms": 5, "entries": []}',
            '{"height": 3, "timestamp_ms": 6, "entries": []}',
        ],
        [
            '{"height": 1, "timestamp_ms": 5, "entries": []}',
            '{"height": 2, "timestamp_ms": 4, "entries": []}',
        ],
    ],
)
def test_bad_logs_fail_cleanly(tmp_path: Path, lines: list[str]) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text("\n".join([replay.genesis_line(genesis()), *lines]) + "\n")
    assert replay.main([str(log)], prog="seqnet replay") == 1


def _deep(depth: int, opening: str) -> str:
    """JSON text nested `depth` levels (+ 1 for the innermost object) of lists or objects."""
    if opening == "[":
        return "[" * depth + "1" + "]" * depth
    return '{"a": ' * depth + '{"a": 1}' + "}" * depth


def _block(entries_json: str) -> str:
    return '{"height": 1, "timestamp_ms": 5, "entries": ' + entries_json + "}"


@settings(max_examples=20, deadline=None)
@given(
    depth=st.integers(33, 200_000),
    opening=st.sampled_from("[{"),
    where=st.sampled_from(["type", "entry", "entries", "genesis"]),
)
def test_deep_nesting_in_a_log_is_a_clear_error_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, depth: int, opening: str, where: str
) -> None:
    """Once, ~500 levels made `seqnet replay` die with a RecursionError traceback: a line
    (or genesis file) nested deeper than the intake's limit is refused with its place."""
    tmp = tmp_path_factory.mktemp("deep")
    deep = _deep(depth, opening)
    log, genesis_file = tmp / "deep.jsonl", tmp / "genesis.json"
    lines = [replay.genesis_line(genesis())]
    args = [str(log)]
    if where == "type":
        lines.append(_block('[{"action": {"type": ' + deep + "}}]"))
    elif where == "entry":
        lines.append(_block("[" + deep + "]"))
    elif where == "entries":
        lines.append(_block(deep))
    else:
        lines = [_block("[]")]
        genesis_file.write_text('{"fee_account": ' + deep + "}")
        args += ["--genesis", str(genesis_file)]
    log.write_text("\n".join(lines) + "\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert replay.main(args, prog="seqnet replay") == 1
    assert "nested deeper than 32 levels" in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_replay_takes_input_nested_up_to_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A type nested 28 levels deep (32 with the line's own levels) is replayed, and
    refused by the engine as the malformed entry it is."""
    log = tmp_path / "ok.jsonl"
    line = _block('[{"action": {"type": ' + _deep(28, "[") + "}}]")
    log.write_text(replay.genesis_line(genesis()) + "\n" + line + "\n")
    assert replay.main([str(log), "--json"], prog="seqnet replay") == 0
    assert '"code":"unknown_action"' in capsys.readouterr().out


def test_demo_log_replays_to_the_demo_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "demo.jsonl"
    assert demo.main(["--log", str(log)], prog="seqnet demo") == 0
    shown = capsys.readouterr().out
    assert replay.main([str(log)], prog="seqnet replay") == 0
    root = capsys.readouterr().out.splitlines()[-1].split()[-1]
    assert root in shown.replace("\n", "")
