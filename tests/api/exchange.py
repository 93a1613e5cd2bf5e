"""An in-process exchange node for API tests: the real matching engine and real
signature checks, with blocks cut by the test (`commit()`) instead of consensus.

It implements what the API needs from node/runtime.py's `Node` — `NodeFacade`,
`QueryFacade` (balances only), and `IndexedNode` (engine, exec_height, block listeners) — so the
indexer, streams and SDK run against the same code paths as on a real node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from matching.config import Genesis
from matching.engine import Engine
from matching.events import Rejected
from node.api.facade import SubmitResult
from node.genesis import default_exchange
from node.intents import Domain, Entry, IntentError, SignedIntent, verify_intent
from node.runtime import Executable, ExecutedBlock

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
FEE_ACCOUNT = bytes([0xFE]) * 20


class ExchangeNode:
    def __init__(self, genesis: Genesis | None = None, domain: Domain = DOMAIN) -> None:
        self.domain = domain
        self.engine = Engine(genesis or default_exchange(FEE_ACCOUNT))
        self.exec_height = 0
        self.listeners: list[Callable[[ExecutedBlock], None]] = []
        self.pending: list[Entry] = []
        self.deposit_id = 0
        self.results: dict[bytes, SubmitResult] = {}
        self._committed = trio.Event()
        self.auto_commit = True

    def add_block_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        self.listeners.append(listener)

    def deposit(self, account: bytes, asset: int, amount: int) -> None:
        self.deposit_id += 1
        action = {
            "type": "deposit",
            "deposit_id": self.deposit_id,
            "account": account,
            "asset": asset,
            "amount": amount,
        }
        self.apply([Executable({"action": action}, bytes(20), None)])

    def apply(
        self, entries: list[Executable], *, seal: bool = False, timestamp_ms: int | None = None
    ) -> ExecutedBlock:
        """One block; `seal`: a checkpoint after it (as every interval height does)."""
        if timestamp_ms is None:
            timestamp_ms = max(time.time_ns() // 1_000_000, self.engine.timestamp_ms)
        result = self.engine.apply_block(timestamp_ms, [e.engine_entry for e in entries])
        checkpoint = self.engine.checkpoint() if seal else None
        self.exec_height += 1
        block = ExecutedBlock(
            self.exec_height, timestamp_ms, tuple(entries), result, checkpoint=checkpoint
        )
        for entry, events in zip(entries, result.events, strict=True):
            if entry.intent_id is None:
                continue
            rejected = next((e for e in events if isinstance(e, Rejected)), None)
            self.results[entry.intent_id] = (
                SubmitResult(entry.intent_id, "committed", height=self.exec_height)
                if rejected is None
                else SubmitResult(
                    entry.intent_id, "rejected", rejected.code, rejected.message, self.exec_height
                )
            )
        for listener in self.listeners:
            listener(block)
        self._committed.set()
        self._committed = trio.Event()
        return block

    def commit(self, *, seal: bool = False) -> ExecutedBlock:
        entries = [Executable(e.to_dict(), e.signer, e.intent_id) for e in self.pending]
        self.pending = []
        return self.apply(entries, seal=seal)

    def seal(self) -> ExecutedBlock:
        """An empty block that seals a checkpoint (the pending withdrawals enter it)."""
        return self.apply([], seal=True)

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        out: list[SubmitResult] = []
        for intent in intents:
            try:
                entry = verify_intent(intent, self.domain)
            except IntentError as exc:
                out.append(
                    SubmitResult(intent.digest(self.domain), "rejected", exc.code, exc.message)
                )
                continue
            self.pending.append(entry)
            out.append(SubmitResult(entry.intent_id, "accepted"))
        if self.auto_commit and self.pending:
            self.commit()
        if wait:
            out = [self.results.get(r.intent_id, r) for r in out]
        return out

    # QueryFacade, as node/runtime.py answers it (enough for the SDK's balances)
    def account(self, address: bytes) -> dict[str, Any]:
        balances = {}
        for asset in self.engine.assets:
            available, locked = self.engine.balance(address, asset.id)
            balances[asset.symbol] = {"asset": asset.id, "available": available, "locked": locked}
        return {"address": "0x" + address.hex(), "height": self.exec_height, "balances": balances}

    def checkpoints(self) -> list[dict[str, Any]]:
        return []

    def withdrawal_proof(self, sequence: int, withdrawal_id: int) -> dict[str, Any] | None:
        return None

    def balance_proof(self, address: bytes, asset_id: int) -> dict[str, Any] | None:
        return None

    def status(self) -> dict[str, Any]:
        return {"committed_height": self.exec_height}

    def is_ready(self) -> bool:
        return True
