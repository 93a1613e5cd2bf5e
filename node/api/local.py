"""An in-process `NodeFacade` without consensus, for API tests and `seqnet bench api`.

It does the node's real intake work — EIP-712 digest, secp256k1 recovery
(`verify_intent`), admission to a real `Mempool` — and stands in for consensus with a
timer (or `commit_now()`) that commits everything pending as one block. It is not the
node: no replay window, no forwarding, no execution.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

import msgpack
import trio

from node.api.facade import SubmitResult
from node.api.intake import CANCEL_ACTIONS
from node.intents import Domain, IntentError, SignedIntent, verify_intent
from node.mempool import AddResult, Mempool, MempoolLimits, PoolItem

# Verify this many signatures between checkpoints, so that a big batch does not hold
# the event loop for more than a few milliseconds.
VERIFY_SLICE: Final = 64
MAX_REMEMBERED_COMMITS: Final = 1_000_000
BLOCK_MAX_ITEMS: Final = 100_000

_ADD_REJECTIONS: Final = {
    AddResult.POOL_FULL: ("mempool_full", "the mempool is full"),
    AddResult.ACCOUNT_FULL: ("account_full", "too many pending intents for this account"),
    AddResult.DUPLICATE: ("duplicate_nonce", "this signer already used this nonce"),
}


class LocalFacade:
    def __init__(
        self, domain: Domain, mempool_limits: MempoolLimits | None = None, *, ready: bool = True
    ) -> None:
        self.domain = domain
        self.ready = ready
        self.mempool = Mempool(mempool_limits or MempoolLimits())
        self.height = 0
        self.verified = 0
        self._committed: OrderedDict[bytes, int] = OrderedDict()  # intent id -> height
        self._new_block = trio.Event()

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        results: list[SubmitResult] = []
        for index, intent in enumerate(intents):
            if index % VERIFY_SLICE == VERIFY_SLICE - 1:
                await trio.lowlevel.checkpoint()
            results.append(self._admit(intent))
        if wait:
            results = await self._wait_committed(results, timeout_s)
        return results

    def _admit(self, intent: SignedIntent) -> SubmitResult:
        if not self.ready:
            return _rejected(intent.digest(self.domain), "not_ready", "the node is not ready")
        try:
            entry = verify_intent(intent, self.domain)
        except IntentError as error:
            return _rejected(intent.digest(self.domain), error.code, error.message)
        self.verified += 1
        intent_id = entry.intent_id
        height = self._committed.get(intent_id)
        if height is not None:
            return SubmitResult(intent_id, "committed", height=height, duplicate=True)
        if intent_id in self.mempool:
            return SubmitResult(intent_id, "accepted", duplicate=True)  # idempotent
        packed: bytes = msgpack.packb(entry.to_dict(), use_bin_type=True)
        item = PoolItem(
            intent_id,
            entry.account,
            entry.signer,
            entry.nonce,
            entry.action["type"] in CANCEL_ACTIONS,
            packed,
        )
        outcome = self.mempool.add(item)
        if outcome is AddResult.ADDED:
            return SubmitResult(intent_id, "accepted")
        code, message = _ADD_REJECTIONS[outcome]
        return _rejected(intent_id, code, message)

    async def _wait_committed(
        self, results: list[SubmitResult], timeout_s: float
    ) -> list[SubmitResult]:
        with trio.move_on_after(timeout_s):
            while any(
                r.intent_id not in self._committed for r in results if r.status == "accepted"
            ):
                await self._new_block.wait()
        final: list[SubmitResult] = []
        for r in results:
            if r.status != "accepted":
                final.append(r)
            elif (height := self._committed.get(r.intent_id)) is not None:
                final.append(SubmitResult(r.intent_id, "committed", height=height))
            else:
                final.append(SubmitResult(r.intent_id, "timeout"))
        return final

    def commit_now(self) -> int:
        """Commit everything pending as one block; returns how many intents."""
        batch = self.mempool.take_batch(BLOCK_MAX_ITEMS, 2**62)
        if not batch:
            return 0
        self.height += 1
        ids = [item.intent_id for item in batch]
        self.mempool.remove(ids)
        for intent_id in ids:
            self._committed[intent_id] = self.height
        while len(self._committed) > MAX_REMEMBERED_COMMITS:
            self._committed.popitem(last=False)
        self._new_block.set()
        self._new_block = trio.Event()
        return len(ids)

    async def run(self, block_interval_s: float) -> None:
        """Stand-in for consensus: commit what is pending every `block_interval_s`."""
        while True:
            await trio.sleep(block_interval_s)
            self.commit_now()

    def status(self) -> dict[str, Any]:
        return {
            "committed_height": self.height,
            "mempool_size": len(self.mempool),
            "verified": self.verified,
            "ready": self.ready,
        }

    def is_ready(self) -> bool:
        return self.ready


def _rejected(intent_id: bytes, code: str, message: str) -> SubmitResult:
    return SubmitResult(intent_id, "rejected", code=code, message=message)
