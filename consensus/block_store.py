"""The tree of blocks above the committed root, and the blocks waiting for their parents.

`BlockStore` holds the last committed block (the root) and every known block that
descends from it; a block enters only when its parent is already there, so every block
in the store chains to the root. Committing a block makes it the new root and prunes
every block that does not descend from it (they can never commit).

The commit rule lives in `QuorumCert.certifies_two_chain` and the core: a QC for block
B' whose parent B sits in the round right before it commits B and all its uncommitted
ancestors, in order.

`Orphans` keeps blocks that arrived before their parents (from a proposal or a block
response) until the parent is inserted, and the block ids being fetched. A fetched
chain is trusted because its newest block's id comes from a verified QC and each block
names its parent by hash.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consensus.types import MAX_RESPONSE_BLOCKS, Block, BlockRequest, BlockResponse, QuorumCert


class InsertStatus(enum.Enum):
    INSERTED = "inserted"
    KNOWN = "known"
    MISSING_PARENT = "missing_parent"
    STALE = "stale"  # at or below the committed root's round: can never commit
    INVALID = "invalid"  # height, round or timestamp do not follow the parent's


class BlockStore:
    def __init__(self, root: Block, high_qc: QuorumCert) -> None:
        assert high_qc.round >= root.round
        self._root = root
        self._blocks: dict[bytes, Block] = {root.id: root}
        self._children: dict[bytes, list[bytes]] = {root.id: []}
        self.high_qc = high_qc

    @property
    def root(self) -> Block:
        return self._root

    def get(self, block_id: bytes) -> Block | None:
        return self._blocks.get(block_id)

    def __contains__(self, block_id: bytes) -> bool:
        return block_id in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    def insert(self, block: Block) -> InsertStatus:
        if block.id in self._blocks:
            return InsertStatus.KNOWN
        if block.round <= self._root.round:
            return InsertStatus.STALE
        parent = self._blocks.get(block.parent_id)
        if parent is None:
            return InsertStatus.MISSING_PARENT
        if (
            block.qc.round != parent.round
            or block.height != parent.height + 1
            or block.timestamp_ms <= parent.timestamp_ms
        ):
            return InsertStatus.INVALID
        self._blocks[block.id] = block
        self._children[block.id] = []
        self._children[parent.id].append(block.id)
        return InsertStatus.INSERTED

    def observe_qc(self, qc: QuorumCert) -> bool:
        """Keep the highest QC seen. True if `qc` is the new highest."""
        if qc.round > self.high_qc.round:
            self.high_qc = qc
            return True
        return False

    def commit(self, block_id: bytes) -> tuple[Block, ...]:
        """Commit `block_id` and its uncommitted ancestors; return them oldest first."""
        path = []
        block = self._blocks[block_id]
        while block.id != self._root.id:
            path.append(block)
            parent = self._blocks.get(block.parent_id)
            # Every stored block chains to the root; anything else is a broken invariant.
            assert parent is not None, "stored block does not chain to the root"
            block = parent
        path.reverse()
        if path:
            self._root = path[-1]
            self._prune()
        return tuple(path)

    def _prune(self) -> None:
        keep: dict[bytes, Block] = {}
        stack = [self._root.id]
        while stack:
            block_id = stack.pop()
            keep[block_id] = self._blocks[block_id]
            stack.extend(self._children[block_id])
        self._children = {block_id: self._children[block_id] for block_id in keep}
        self._blocks = keep

    def chain(self, block_id: bytes, count: int) -> tuple[Block, ...]:
        """`block_id` and up to count - 1 of its ancestors in the store, newest first."""
        return collect_chain(self._blocks, block_id, count)


def collect_chain(blocks: Mapping[bytes, Block], block_id: bytes, count: int) -> tuple[Block, ...]:
    """Newest first, from any id -> block mapping (the core's store or the node's disk)."""
    out: list[Block] = []
    block = blocks.get(block_id)
    while block is not None and block.round > 0 and len(out) < count:
        out.append(block)
        block = blocks.get(block.parent_id)
    return tuple(out)


def serve_request(blocks: Mapping[bytes, Block], request: BlockRequest) -> BlockResponse | None:
    """The answer to a block request, or None if we do not have the block."""
    chain = collect_chain(blocks, request.block_id, min(request.count, MAX_RESPONSE_BLOCKS))
    return BlockResponse(chain) if chain else None


@dataclass(slots=True)
class Wanted:
    round: int  # the block's round, known from the QC or child that names it
    peer: int  # who we asked last
    asked_ms: int  # when


class Orphans:
    """Blocks whose parent is missing, and the ids we asked peers for. Bounded."""

    def __init__(self, max_blocks: int) -> None:
        self._max_blocks = max_blocks
        self._blocks: dict[bytes, Block] = {}
        self._by_parent: dict[bytes, list[bytes]] = {}
        self.wanted: dict[bytes, Wanted] = {}

    def __contains__(self, block_id: bytes) -> bool:
        return block_id in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    def add(self, block: Block) -> bool:
        if block.id in self._blocks or len(self._blocks) >= self._max_blocks:
            return False
        self._blocks[block.id] = block
        self._by_parent.setdefault(block.parent_id, []).append(block.id)
        self.wanted.pop(block.id, None)  # we have it now; its parent is what we need
        return True

    def children_of(self, parent_id: bytes) -> list[Block]:
        """Remove and return the orphans waiting for `parent_id`."""
        return [self._blocks.pop(i) for i in self._by_parent.pop(parent_id, [])]

    def want(self, block_id: bytes, round_: int, peer: int, now_ms: int) -> bool:
        """Record that we fetch `block_id` from `peer`. False if already being fetched."""
        if block_id in self.wanted or len(self.wanted) >= self._max_blocks:
            return False
        self.wanted[block_id] = Wanted(round_, peer, now_ms)
        return True

    def prune(self, root_round: int) -> None:
        """Forget what can no longer be inserted: at or below the committed round."""
        for block_id in [i for i, w in self.wanted.items() if w.round <= root_round]:
            del self.wanted[block_id]
        stale = [b for b in self._blocks.values() if b.round <= root_round]
        for block in stale:
            self._drop(block)

    def _drop(self, block: Block) -> None:
        del self._blocks[block.id]
        siblings = self._by_parent.get(block.parent_id, [])
        if block.id in siblings:
            siblings.remove(block.id)
        if not siblings:
            self._by_parent.pop(block.parent_id, None)
        # Its own waiting children are dropped when their round falls below the root too.

    def ids(self) -> Iterable[bytes]:
        return self._blocks.keys()
