"""Chain watcher: the settlement contract's confirmed `Deposit` events, for consensus.

API (what the runtime uses):

    watcher = ChainWatcher(settlement, genesis.exchange.assets, WatcherOptions(confirmations=N))
    nursery.start_soon(watcher.run)           # polls every `poll_interval_s`, web3 in threads
    watcher.seen(deposit_id)                  # -> DepositRecord | None  (replica: vote only if
                                              #    the proposed record == this one)
    watcher.next_deposits(after_id, limit, min_age_s)  # -> consecutive records after_id+1, …
    watcher.applied(last_deposit_id)          # forget what the engine has applied (bounded map)
    watcher.origin(deposit_id)                # -> (tx hash, block) of a recent deposit, for the API
    watcher.add_listener(fn)                  # fn(ChainSeen): every confirmed Deposit and
                                              #    WithdrawalClaimed, rescans included (API history)
    watcher.status()                          # for the API / metrics

A deposit is reported only once it has `confirmations` (N) confirmations: its block and
N - 1 blocks on top of it (a deposit in the head block has one). The watcher never reads
above that safe height, so a reorg shallower than the confirmation depth never shows it
anything. Each poll is checked against reorgs that happen while it runs: the logs' block
hashes must be the canonical hashes of their heights, and the last block of the range
must keep its hash while the logs are read. A reorg deeper than the confirmation depth
(outside the model) is detected at the next poll, because the last scanned block's hash
changed: the watcher raises the alarm `deep_reorg`, drops what it saw above the fork and
scans again from there; a deposit id that comes back with different data raises
`deposit_conflict`.

Blocking web3 calls run in worker threads (`trio.to_thread.run_sync`), never on the
event loop; this room owns no engine state and signs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from contracts.settlement import Settlement, decode_events
from matching.config import Asset
from node.payload import U64_MAX, VOID_ASSET, DepositRecord

__all__ = ["ChainSeen", "ChainWatcher", "DepositRecord", "WatcherOptions", "map_deposit"]

log = structlog.get_logger("seqnet.chain_watcher")


@dataclass(frozen=True, slots=True)
class WatcherOptions:
    confirmations: int = 3  # N: a deposit's block plus N-1 blocks on top of it
    poll_interval_s: float = 1.0
    start_block: int = 0  # the contract's deployment block is enough
    max_blocks_per_poll: int = 2_000  # bounded eth_getLogs ranges
    max_pending: int = 100_000  # seen but not yet applied; scanning pauses when full
    scan_marks_kept: int = 256  # (height, hash) of past scans, to find a deep reorg's fork
    origins_kept: int = 10_000  # (tx hash, block) of applied deposits, for the API

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        if self.max_blocks_per_poll < 1 or self.max_pending < 1 or self.scan_marks_kept < 1:
            raise ValueError("limits must be positive")


@dataclass(frozen=True, slots=True)
class _Seen:
    record: DepositRecord
    block_number: int
    tx_hash: bytes
    seen_at: float  # trio time it was first recorded


@dataclass(frozen=True, slots=True)
class _RawDeposit:
    deposit_id: int
    account: bytes
    token: bytes
    amount: int
    block_number: int
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one poll read: the deposits in blocks (scanned, to_block] and the hash of
    `to_block`; or, after a deep reorg, only the height to rewind to."""

    to_block: int
    to_hash: bytes
    deposits: list[_RawDeposit]
    rewind_to: int | None = None
    claims: tuple[ChainSeen, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainSeen:
    """A confirmed settlement event the API's history wants: a `Deposit` (id =
    depositId) or a `WithdrawalClaimed` (id = withdrawalId, `sequence` its checkpoint)."""

    kind: str  # "deposit" | "claim"
    id: int
    tx_hash: bytes
    block_number: int
    sequence: int | None = None


class _RetryScan(Exception):
    """The chain moved under this poll; try again at the next one."""


def map_deposit(
    deposit_id: int, account: bytes, token: bytes, amount: int, assets: Sequence[Asset]
) -> tuple[DepositRecord, str | None]:
    """The record of a deposit event, and why it is void (None when it maps cleanly)."""
    asset = next((a for a in assets if a.token == token), None)
    problem: str | None = None
    if asset is None:
        problem = "token not in genesis"
    elif amount % asset.unit:
        problem = f"amount not a multiple of the unit {asset.unit}"
    elif amount // asset.unit > U64_MAX:
        problem = "engine amount above 64 bits"
    if asset is None or problem is not None:
        return DepositRecord(deposit_id, account, token, amount, VOID_ASSET, 0), problem
    return DepositRecord(deposit_id, account, token, amount, asset.id, amount // asset.unit), None


class ChainWatcher:
    def __init__(
        self,
        settlement: Settlement,
        assets: Sequence[Asset],
        options: WatcherOptions | None = None,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if any(a.id == VOID_ASSET for a in assets):
            raise ValueError(f"asset id {VOID_ASSET} is reserved for void deposits")
        self.settlement = settlement
        self.assets = tuple(assets)
        self.options = options or WatcherOptions()
        self._limiter = limiter
        self._seen: OrderedDict[int, _Seen] = OrderedDict()  # ascending deposit id
        self._applied = 0  # deposits at or below this id were applied by the engine
        self._scanned = self.options.start_block - 1  # highest block read
        self._marks: OrderedDict[int, bytes] = OrderedDict()  # scanned height -> hash
        self.head = -1
        self._origins: OrderedDict[int, tuple[bytes, int]] = OrderedDict()
        self._listeners: list[Callable[[ChainSeen], None]] = []
        self.counters: dict[str, int] = {
            "deposits_seen": 0,
            "deposits_void": 0,
            "deposit_conflict": 0,
            "deep_reorg": 0,
            "scan_retries": 0,
            "poll_errors": 0,
        }

    # ------------------------------------------------------------------ queries

    def seen(self, deposit_id: int) -> DepositRecord | None:
        """The record of a deposit seen with enough confirmations, or None."""
        entry = self._seen.get(deposit_id)
        return None if entry is None else entry.record

    def next_deposits(
        self, after_id: int, limit: int, min_age_s: float = 0.0
    ) -> list[DepositRecord]:
        """Up to `limit` records with ids after_id+1, after_id+2, … (stops at a gap).
        `min_age_s`: only records this watcher has held for that long, so that the other
        members' watchers (polling on their own schedule) have likely seen them too."""
        out: list[DepositRecord] = []
        next_id = after_id + 1
        newest = trio.current_time() - min_age_s if min_age_s > 0 else None
        while len(out) < limit:
            entry = self._seen.get(next_id)
            if entry is None or (newest is not None and entry.seen_at > newest):
                break
            out.append(entry.record)
            next_id += 1
        return out

    def applied(self, last_deposit_id: int) -> None:
        """The engine applied every deposit up to this id: forget them (keeps the map
        bounded). Call it after each committed block."""
        self._applied = max(self._applied, last_deposit_id)
        while self._seen:
            first = next(iter(self._seen))
            if first > self._applied:
                break
            seen = self._seen.pop(first)
            self._remember_origin(first, seen.tx_hash, seen.block_number)

    def origin(self, deposit_id: int) -> tuple[bytes, int] | None:
        """(transaction hash, block number) of a deposit seen recently (bounded)."""
        entry = self._seen.get(deposit_id)
        if entry is not None:
            return entry.tx_hash, entry.block_number
        return self._origins.get(deposit_id)

    def add_listener(self, listener: Callable[[ChainSeen], None]) -> None:
        """Called on the event loop for each confirmed deposit and claim a poll reads
        (again after a restart or a reorg rescan: listeners must be idempotent)."""
        self._listeners.append(listener)

    def _remember_origin(self, deposit_id: int, tx_hash: bytes, block_number: int) -> None:
        self._origins[deposit_id] = (tx_hash, block_number)
        while len(self._origins) > self.options.origins_kept:
            self._origins.popitem(last=False)

    @property
    def highest_seen(self) -> int:
        return next(reversed(self._seen)) if self._seen else self._applied

    def status(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "scanned_block": self._scanned,
            "confirmations": self.options.confirmations,
            "pending_deposits": len(self._seen),
            "highest_seen_deposit": self.highest_seen,
            **self.counters,
        }

    # ------------------------------------------------------------------ polling

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.poll()
            await trio.sleep(self.options.poll_interval_s)

    async def poll(self) -> int:
        """Read the chain once; return how many new deposits were recorded. Never raises
        for a chain that misbehaves or is unreachable (it logs and tries again later)."""
        if len(self._seen) >= self.options.max_pending:
            log.warning("watcher_backpressure", pending=len(self._seen))
            return 0
        try:
            scan = await trio.to_thread.run_sync(self._scan, limiter=self._limiter)
        except _RetryScan as exc:
            self.counters["scan_retries"] += 1
            log.info("deposit scan retried", reason=str(exc))
            return 0
        except Exception as exc:  # an RPC failure must not stop the node
            self.counters["poll_errors"] += 1
            log.warning("deposit scan failed", error=f"{type(exc).__name__}: {exc}")
            return 0
        if scan is None:
            return 0
        return self._record(scan)

    def _canonical_hash(self, number: int) -> bytes:
        block: Any = self.settlement.w3.eth.get_block(number)
        return bytes(block["hash"])

    def _scan(self) -> _Scan | None:
        """Blocking: one bounded range of confirmed blocks (runs in a worker thread)."""
        w3 = self.settlement.w3
        self.head = int(w3.eth.block_number)
        fork = self._fork_point()
        if fork is not None:
            return _Scan(fork, b"", [], rewind_to=fork)
        safe = self.head - self.options.confirmations + 1
        start = self._scanned + 1
        if safe < start:
            return None
        to_block = min(safe, start + self.options.max_blocks_per_poll - 1)
        to_hash = self._canonical_hash(to_block)
        logs: list[Any] = w3.eth.get_logs(
            {
                "address": w3.to_checksum_address(self.settlement.address),
                "fromBlock": start,
                "toBlock": to_block,
            }
        )
        hashes: dict[int, bytes] = {to_block: to_hash}
        deposits = []
        claims = []
        for lg in logs:
            # Logs carry their block's hash; another hash means a reorg while we read.
            number = int(lg["blockNumber"])
            if number not in hashes:
                hashes[number] = self._canonical_hash(number)
            if bytes(lg["blockHash"]) != hashes[number]:
                raise _RetryScan(f"block {number} changed while it was read")
            for e in decode_events(w3, [lg]):
                if e.name == "Deposit":
                    deposits.append(
                        _RawDeposit(
                            int(e.args["depositId"]),
                            e.args["account"],
                            e.args["token"],
                            int(e.args["amount"]),
                            number,
                            e.tx_hash,
                        )
                    )
                elif e.name == "WithdrawalClaimed":
                    claims.append(
                        ChainSeen(
                            "claim",
                            int(e.args["withdrawalId"]),
                            e.tx_hash,
                            number,
                            int(e.args["sequence"]),
                        )
                    )
        if self._canonical_hash(to_block) != to_hash:
            raise _RetryScan(f"block {to_block} changed while it was read")
        return _Scan(to_block, to_hash, deposits, claims=tuple(claims))

    def _fork_point(self) -> int | None:
        """Blocking: None while the last scanned block is still canonical. Otherwise a
        reorg deeper than the confirmation depth happened: the newest scan mark that is
        still canonical (or the block before `start_block`)."""
        if not self._marks:
            return None
        last, last_hash = next(reversed(self._marks.items()))
        if last <= self.head and self._canonical_hash(last) == last_hash:
            return None
        for height, mark in reversed(self._marks.items()):
            if height <= self.head and self._canonical_hash(height) == mark:
                return height
        return self.options.start_block - 1

    def _rewind(self, fork: int) -> None:
        self.counters["deep_reorg"] += 1
        log.error(
            "deep_reorg",
            alarm=True,
            scanned=self._scanned,
            fork_at_or_below=fork,
            confirmations=self.options.confirmations,
        )
        for height in [h for h in self._marks if h > fork]:
            del self._marks[height]
        for deposit_id in [i for i, s in self._seen.items() if s.block_number > fork]:
            del self._seen[deposit_id]
        self._scanned = fork

    def _record(self, scan: _Scan) -> int:
        if scan.rewind_to is not None:
            self._rewind(scan.rewind_to)
            return 0
        added = 0
        seen = [
            ChainSeen("deposit", d.deposit_id, d.tx_hash, d.block_number) for d in scan.deposits
        ]
        for listener in self._listeners:
            for event in (*seen, *scan.claims):
                listener(event)
        for raw in scan.deposits:
            deposit_id = raw.deposit_id
            record, problem = map_deposit(
                deposit_id, raw.account, raw.token, raw.amount, self.assets
            )
            if problem is not None:
                self.counters["deposits_void"] += 1
                log.error(
                    "deposit_unmappable",
                    alarm=True,
                    deposit_id=deposit_id,
                    token="0x" + raw.token.hex(),
                    amount=str(raw.amount),
                    problem=problem,
                )
            if deposit_id <= self._applied:
                self._remember_origin(deposit_id, raw.tx_hash, raw.block_number)
                continue
            old = self._seen.get(deposit_id)
            if old is not None and old.record != record:
                self.counters["deposit_conflict"] += 1
                log.error("deposit_conflict", alarm=True, deposit_id=deposit_id)
            if old is None or old.record != record:
                added += old is None
                self._seen[deposit_id] = _Seen(
                    record, raw.block_number, raw.tx_hash, trio.current_time()
                )
                self.counters["deposits_seen"] += old is None
        if added:
            # Events arrive in chain order, so ids ascend; keep the map sorted regardless.
            self._seen = OrderedDict(sorted(self._seen.items()))
        self._scanned = scan.to_block
        self._marks[scan.to_block] = scan.to_hash
        while len(self._marks) > self.options.scan_marks_kept:
            self._marks.popitem(last=False)
        if added:
            log.info("deposits confirmed", count=added, through_block=scan.to_block)
        return added
