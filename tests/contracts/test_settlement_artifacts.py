"""The committed artifacts in contracts/build/ are exactly what the pinned solc makes of
contracts/src (rebuild with `seqnet contracts build`)."""

from __future__ import annotations

from pathlib import Path

from contracts.artifacts import BUILD_DIR, SOLC_VERSION, differences, load_artifact, write_artifacts


def test_committed_artifacts_match_sources(tmp_path: Path) -> None:
    write_artifacts(tmp_path)
    built = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    assert set(built) >= {"Settlement.json", "TestToken.json"}
    stale = differences(built, BUILD_DIR)
    assert not stale, f"out of date (run `seqnet contracts build`): {stale}"


def test_artifact_loads() -> None:
    art = load_artifact("Settlement")
    assert len(art.bytecode) > 1000 and 0x60 <= art.bytecode[0] <= 0x7F  # starts with a PUSH
    names = {i.get("name") for i in art.abi if i["type"] == "error"}
    assert {"InsufficientSignatures", "NotMember", "ReentrancyGuardReentrantCall"} <= names
    assert SOLC_VERSION == "0.8.37"
