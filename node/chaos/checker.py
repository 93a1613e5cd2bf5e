"""The chaos checker: a run's history against what every node stored.

Reads each member's committed log and block store from its SQLite data directory after
the processes stopped, and its JSON log lines, and reports violations as sentences:

- agreement: honest logs are prefixes of one another (same block id at every height);
- exactly once: no intent appears twice in one log;
- durability: every intent acknowledged as committed at height h is in every honest log
  at height h (each log must reach h), at the same index;
- no equivocation: no member authored two blocks in one round, no round certified two
  blocks (the members in both QCs signed conflicting votes), and no honest node logged
  an equivocating vote.

State roots are not compared: the engine is deterministic, so identical logs give
identical state (checkpoints are not wired into the node runtime yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from consensus.types import Block
from node.chaos.harness import Answer
from node.intents import Domain
from node.payload import BadEntry, decode_committed, decode_entry
from node.store.storage import CorruptStorage, open_storage

MAX_LOG_HEIGHT = 10_000_000
EQUIVOCATION_MARKERS = ("equivocat", "double vote", "double-vote")


@dataclass
class NodeLog:
    name: str
    blocks: list[tuple[bytes, list[str]]]  # per height from 1: (block id, intent ids hex)
    stored: list[Block] = field(default_factory=list)  # every block in its block store
    misbehaviour: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def height(self) -> int:
        return len(self.blocks)


def read_node(name: str, data_dir: Path, log: Path, genesis_hash: bytes, domain: Domain) -> NodeLog:
    node = NodeLog(name, [])
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            lowered = line.lower()
            if any(marker in lowered for marker in EQUIVOCATION_MARKERS):
                node.misbehaviour.append(line[:300])
    if not (data_dir / "node.sqlite").exists():
        node.error = "no database"
        return node
    try:
        storage = open_storage(data_dir, genesis_hash)
    except CorruptStorage as exc:
        node.error = f"unreadable: {exc}"
        return node
    try:
        for height, data in storage.load_committed(1, MAX_LOG_HEIGHT):
            block = decode_committed(data)
            assert block.height == height, (height, block.height)
            ids = []
            for raw in block.payload[:-1]:  # the signers entry last
                try:
                    ids.append(decode_entry(raw).digest(domain).hex())
                except BadEntry:
                    ids.append("bad:" + raw[:16].hex())
            node.blocks.append((block.id, ids))
            node.stored.append(block)
        for raw in storage.load_blocks(0):
            node.stored.append(Block.from_wire(msgpack.unpackb(raw, raw=False)))
    finally:
        storage.close()
    return node


@dataclass
class Verdict:
    violations: list[str]
    acknowledged: int
    lost: int


def check(
    logs: list[NodeLog],
    history: list[Answer],
    honest: set[str],
    n_members: int,
    byzantine: frozenset[int] = frozenset(),
) -> Verdict:
    violations: list[str] = []
    honest_logs = [lg for lg in logs if lg.name in honest and lg.error is None]
    for lg in logs:
        if lg.name in honest and lg.error is not None:
            violations.append(f"{lg.name}: log {lg.error}")
    violations += _agreement(honest_logs)
    violations += _exactly_once(honest_logs)
    acked = [a for a in history if a.acknowledged]
    lost_ids, durability = _durability(honest_logs, acked)
    violations += durability
    violations += _equivocation(logs, honest, n_members, byzantine)
    return Verdict(violations, len(acked), len(lost_ids))


def _agreement(logs: list[NodeLog]) -> list[str]:
    out = []
    for a_i, a in enumerate(logs):
        for b in logs[a_i + 1 :]:
            common = min(a.height, b.height)
            for h in range(common):
                if a.blocks[h][0] != b.blocks[h][0]:
                    out.append(
                        f"{a.name} and {b.name} committed different blocks at height {h + 1}"
                    )
                    break
    return out


def _exactly_once(logs: list[NodeLog]) -> list[str]:
    out = []
    for lg in logs:
        seen: dict[str, int] = {}
        for h, (_, ids) in enumerate(lg.blocks, start=1):
            for intent in ids:
                if intent in seen:
                    out.append(
                        f"{lg.name}: intent {intent[:16]}… at heights {seen[intent]} and {h}"
                    )
                seen[intent] = h
    return out


def _durability(logs: list[NodeLog], acked: list[Answer]) -> tuple[set[str], list[str]]:
    lost: set[str] = set()
    out = []
    for a in acked:
        assert a.height is not None
        positions = set()
        for lg in logs:
            if lg.height < a.height:
                lost.add(a.id)
                out.append(f"{lg.name}: ends at {lg.height}, below acknowledged height {a.height}")
                continue
            ids = lg.blocks[a.height - 1][1]
            if a.id not in ids:
                lost.add(a.id)
                out.append(
                    f"{lg.name}: intent {a.id[:16]}… acknowledged at height {a.height} "
                    f"by node{a.node} is not in that block"
                )
                continue
            positions.add(ids.index(a.id))
        if len(positions) > 1:
            out.append(f"intent {a.id[:16]}… at different positions {sorted(positions)}")
    return lost, _dedupe(out)


def _equivocation(
    logs: list[NodeLog], honest: set[str], n_members: int, byzantine: frozenset[int]
) -> list[str]:
    """Conflicting signatures by any member that is not deliberately Byzantine."""
    out = []
    proposals: dict[tuple[int, int], set[bytes]] = {}
    certified: dict[int, dict[bytes, set[int]]] = {}
    for lg in logs:
        for block in lg.stored:
            proposals.setdefault((block.author, block.round), set()).add(block.id)
            vote = block.qc.vote_data
            if vote.round > 0:
                signers = certified.setdefault(vote.round, {}).setdefault(vote.block_id, set())
                signers |= set(block.qc.signers)
    for (author, round_), ids in sorted(proposals.items()):
        if len(ids) > 1 and 0 <= author < n_members and author not in byzantine:
            out.append(f"member {author} proposed {len(ids)} different blocks in round {round_}")
    for round_, by_block in sorted(certified.items()):
        if len(by_block) > 1:
            both = set.intersection(*by_block.values())
            out.append(
                f"round {round_} certified {len(by_block)} blocks; members {sorted(both)} "
                "signed conflicting votes"
            )
    for lg in logs:
        reports = [r for r in lg.misbehaviour if _author(r) not in byzantine]
        if lg.name in honest and reports:
            out.append(f"{lg.name} reported: {reports[0]}")
    return out


def _author(report: str) -> int | None:
    """The accused member of a `peer misbehaviour` log line."""
    try:
        author = json.loads(report).get("author")
    except ValueError:
        return None
    return author if isinstance(author, int) else None


def _dedupe(items: list[str], limit: int = 20) -> list[str]:
    unique = list(dict.fromkeys(items))
    if len(unique) > limit:
        return [*unique[:limit], f"… and {len(unique) - limit} more"]
    return unique
