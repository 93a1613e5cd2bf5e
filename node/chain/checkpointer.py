"""Checkpointer: sign each checkpoint, gather the committee's signatures, land it on chain.

API (what the runtime uses):

    cp = Checkpointer.from_genesis(genesis, me, settlement_key, settlement, send_all)
    nursery.start_soon(cp.run)            # reads the contract, submits, re-sends; web3 in threads
    cp.on_checkpoint(engine.checkpoint()) # at every committed height that is a multiple of
                                          # genesis.consensus.checkpoint_interval_blocks
    cp.on_peer_signature(peer, message)   # for peer messages of kind "cps"
    cp.checkpoints()                      # per sequence: roots, signatures, submit tx, landed
    cp.counters                           # checkpoint_mismatch, … (metrics)

Peer message (msgpack list, PROTOCOL.md §7):

    ["cps", sequence, epoch, state_root, withdrawals_root, last_deposit_id, signature]

`signature` is the sender's 64-byte ERC-2098 signature over the EIP-712 checkpoint digest
(contracts.signing). A signature counts only if the checkpoint it signs is exactly the one
this node computed and it recovers to the sender's genesis settlement address. A peer
that signed other roots raises the alarm `checkpoint_mismatch` (log line and counter); a
signature that does not recover to its sender is dropped (`checkpoint_bad_signature`).

Submission: checkpoint `s` can land only after `s - 1`. Once a node holds the contract's
threshold of signatures for `s` and sees `s - 1` landed, member `s mod n` submits at once;
member `(s + k) mod n` submits only if `s` has still not landed k × `takeover_s` seconds
after that moment (by its own clock). Every submitter reads the contract's sequence first and
skips a checkpoint that has landed; a revert `UnexpectedSequence` because another member
landed it first is success. State is bounded: pending (unlanded) sequences, a few landed
ones for the API, and at most `max_ahead` early signatures per peer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import structlog
import trio

from contracts.settlement import Reverted, Settlement, SettlementState
from contracts.signing import (
    Checkpoint,
    Signature,
    address_of,
    checkpoint_digest,
    recover,
    sign,
    sorted_members,
)
from matching.checkpoint import Checkpoint as EngineCheckpoint
from node.genesis import Genesis

log = structlog.get_logger("seqnet.checkpointer")

MESSAGE_KIND = "cps"


@dataclass(frozen=True, slots=True)
class CheckpointerOptions:
    takeover_s: float = 30.0  # T: the next member submits when it has not landed by then
    poll_interval_s: float = 1.0
    resend_s: float = 10.0  # re-broadcast our signature of an unlanded checkpoint
    max_pending: int = 4_096
    max_ahead: int = 8  # early signatures kept per peer (sequences we have not reached)
    history: int = 16  # landed checkpoints kept for the API
    event_lookback_blocks: int = 1_000  # where the CheckpointAccepted scan starts


class SignatureResult(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    EARLY = "early"  # kept until we compute that checkpoint
    STALE = "stale"  # landed or dropped already
    MISMATCH = "mismatch"  # a valid signature over other roots: alarm
    BAD_SIGNATURE = "bad_signature"  # does not recover to the sender: dropped
    MALFORMED = "malformed"


@dataclass(slots=True)
class PendingCheckpoint:
    checkpoint: Checkpoint
    digest: bytes
    signatures: dict[bytes, Signature] = field(default_factory=dict)  # by signer address
    mismatched: dict[int, Checkpoint] = field(default_factory=dict)  # peer -> what it signed
    quorum_at: float | None = None  # trio time at which we first held the threshold
    ready_at: float | None = None  # when it was both at quorum and next to land
    sent_at: float | None = None  # when our signature was last broadcast
    submitted_at: float | None = None  # when we last tried to submit it
    submit_tx: bytes | None = None  # the accepting transaction, ours or another member's
    landed: bool = False

    def view(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "sequence": cp.sequence,
            "epoch": cp.epoch,
            "state_root": "0x" + cp.state_root.hex(),
            "withdrawals_root": "0x" + cp.withdrawals_root.hex(),
            "last_deposit_id": cp.last_deposit_id,
            "digest": "0x" + self.digest.hex(),
            "signatures": {
                "0x" + a.hex(): "0x" + s.to_bytes().hex()
                for a, s in sorted(self.signatures.items())
            },
            "mismatched_peers": sorted(self.mismatched),
            "submit_tx": None if self.submit_tx is None else "0x" + self.submit_tx.hex(),
            "landed": self.landed,
        }


def signature_message(cp: Checkpoint, signature: Signature) -> list[Any]:
    return [
        MESSAGE_KIND,
        cp.sequence,
        cp.epoch,
        cp.state_root,
        cp.withdrawals_root,
        cp.last_deposit_id,
        signature.to_bytes(),
    ]


def parse_signature_message(message: Any) -> tuple[Checkpoint, Signature] | None:
    """The checkpoint and signature of a "cps" message, or None if it is malformed."""
    if not isinstance(message, list | tuple) or len(message) != 7 or message[0] != MESSAGE_KIND:
        return None
    _, sequence, epoch, state_root, withdrawals_root, last_deposit_id, raw = message
    if not all(type(v) is int for v in (sequence, epoch, last_deposit_id)):
        return None
    if not all(type(v) is bytes for v in (state_root, withdrawals_root, raw)):
        return None
    try:
        cp = Checkpoint(epoch, sequence, state_root, withdrawals_root, last_deposit_id)
        return cp, Signature.from_bytes(raw)
    except ValueError:
        return None


class Checkpointer:
    def __init__(
        self,
        *,
        members: Sequence[bytes],
        me: int,
        key: bytes,
        chain_id: int,
        contract: bytes,
        settlement: Settlement | None,
        send_all: Callable[[list[Any]], None],
        threshold: int,
        epoch: int = 0,
        options: CheckpointerOptions | None = None,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        """`members`: settlement addresses in genesis (leader-rotation) order; `key`: this
        member's secp256k1 secret; `settlement`: None for a node that only signs."""
        if address_of(key) != members[me]:
            raise ValueError("the settlement key is not this member's settlement address")
        if not 1 <= threshold <= len(members):
            raise ValueError(f"threshold {threshold} out of 1..{len(members)}")
        self.members = tuple(members)
        self.sorted_members = sorted_members(members)
        self.me = me
        self.n = len(members)
        self._key = key
        self.address = members[me]
        self.chain_id = chain_id
        self.contract = contract
        self.settlement = settlement
        self.send_all = send_all
        self.threshold = threshold
        self.epoch = epoch
        self.options = options or CheckpointerOptions()
        self._limiter = limiter
        self.pending: OrderedDict[int, PendingCheckpoint] = OrderedDict()  # ascending
        self.history: OrderedDict[int, PendingCheckpoint] = OrderedDict()
        self._early: dict[int, OrderedDict[int, list[Any]]] = {}  # peer -> sequence -> msg
        self.landed_sequence = 0  # the contract's, as last read
        self.latest_sequence = 0  # highest checkpoint handed to on_checkpoint
        self._contract_read = False
        self._events_from: int | None = None
        self._wake = trio.Event()
        self.counters: dict[str, int] = {
            "checkpoints_signed": 0,
            "checkpoints_submitted": 0,
            "checkpoints_landed": 0,
            "checkpoint_mismatch": 0,
            "checkpoint_landed_mismatch": 0,
            "checkpoint_bad_signature": 0,
            "checkpoint_malformed": 0,
            "submit_failures": 0,
            "pending_overflow": 0,
        }

    @classmethod
    def from_genesis(
        cls,
        genesis: Genesis,
        me: int,
        key: bytes,
        settlement: Settlement | None,
        send_all: Callable[[list[Any]], None],
        options: CheckpointerOptions | None = None,
        limiter: trio.CapacityLimiter | None = None,
    ) -> Checkpointer:
        if genesis.settlement_contract is None:
            raise ValueError("genesis has no settlement_contract: nothing to checkpoint to")
        return cls(
            members=[m.settlement_address for m in genesis.members],
            me=me,
            key=key,
            chain_id=genesis.chain_id,
            contract=genesis.settlement_contract,
            settlement=settlement,
            send_all=send_all,
            threshold=genesis.quorum,
            options=options,
            limiter=limiter,
        )

    # ------------------------------------------------------------ inputs (sync, cheap)

    def on_checkpoint(self, engine_cp: EngineCheckpoint) -> None:
        """Sign what our engine computed and broadcast the signature. Call it for every
        engine checkpoint, in order (replayed ones after a restart are dropped once the
        contract shows them landed)."""
        cp = Checkpoint(
            self.epoch,
            engine_cp.sequence,
            engine_cp.state_root,
            engine_cp.withdrawals_root,
            engine_cp.last_deposit_id,
        )
        assert cp.sequence > self.latest_sequence, "engine checkpoints go forward"
        self.latest_sequence = cp.sequence
        if cp.sequence <= self.landed_sequence:
            return
        if len(self.pending) >= self.options.max_pending:
            # Every checkpoint must land in order, so keep the oldest; the chain is stuck.
            self.counters["pending_overflow"] += 1
            log.error("checkpoint_pending_overflow", alarm=True, sequence=cp.sequence)
            return
        pending = self._sign(cp)
        self.pending[cp.sequence] = pending
        self.counters["checkpoints_signed"] += 1
        if self._contract_read:
            self._broadcast(pending)
        for peer, early in self._early.items():
            message = early.pop(cp.sequence, None)
            if message is not None:
                self.on_peer_signature(peer, message)
        self._check_quorum(pending)

    def on_peer_signature(self, peer: int, message: Any) -> SignatureResult:
        """A "cps" message from an authenticated peer (its committee index)."""
        parsed = parse_signature_message(message)
        if parsed is None or not 0 <= peer < self.n or peer == self.me:
            self.counters["checkpoint_malformed"] += 1
            return SignatureResult.MALFORMED
        theirs, signature = parsed
        sequence = theirs.sequence
        if sequence <= self.landed_sequence:
            return SignatureResult.STALE
        pending = self.pending.get(sequence)
        if pending is None:
            if sequence <= self.latest_sequence:
                return SignatureResult.STALE  # dropped by the pending bound
            if sequence > self.latest_sequence + self.options.max_ahead:
                return SignatureResult.STALE  # too far ahead to be worth keeping
            early = self._early.setdefault(peer, OrderedDict())
            early[sequence] = list(message)
            while len(early) > self.options.max_ahead:
                early.popitem(last=False)
            return SignatureResult.EARLY
        signer = self.members[peer]
        ours = pending.checkpoint
        digest = (
            pending.digest
            if theirs == ours
            else checkpoint_digest(self.chain_id, self.contract, theirs)
        )
        if recover(digest, signature) != signer:
            self.counters["checkpoint_bad_signature"] += 1
            log.warning("checkpoint_bad_signature", peer=peer, sequence=sequence)
            return SignatureResult.BAD_SIGNATURE
        if theirs != ours:
            if peer not in pending.mismatched:
                pending.mismatched[peer] = theirs
                self.counters["checkpoint_mismatch"] += 1
                log.error(
                    "checkpoint_mismatch",
                    alarm=True,
                    peer=peer,
                    sequence=sequence,
                    ours=_describe(ours),
                    theirs=_describe(theirs),
                )
            return SignatureResult.MISMATCH
        if signer in pending.signatures:
            return SignatureResult.DUPLICATE
        pending.signatures[signer] = signature
        self._check_quorum(pending)
        return SignatureResult.ACCEPTED

    # ------------------------------------------------------------ queries

    def checkpoints(self) -> list[dict[str, Any]]:
        """Landed (recent) and pending checkpoints, ascending by sequence."""
        return [p.view() for p in (*self.history.values(), *self.pending.values())]

    def checkpoint(self, sequence: int) -> dict[str, Any] | None:
        found = self.pending.get(sequence) or self.history.get(sequence)
        return None if found is None else found.view()

    def status(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "threshold": self.threshold,
            "landed_sequence": self.landed_sequence,
            "latest_sequence": self.latest_sequence,
            "pending": len(self.pending),
            **self.counters,
        }

    # ------------------------------------------------------------ the on-chain loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.tick()
            except Exception as exc:  # an RPC failure must not stop the node
                self.counters["submit_failures"] += 1
                log.warning("checkpointer tick failed", error=f"{type(exc).__name__}: {exc}")
            with trio.move_on_after(self.options.poll_interval_s):
                await self._wake.wait()
            self._wake = trio.Event()

    async def tick(self) -> None:
        """One round: read the contract, retire what landed, re-send, maybe submit."""
        if self.settlement is None:
            self._contract_read = True
            self._resend(trio.current_time())
            return
        state = await self._thread(self.settlement.state)
        self._adopt(state)
        await self._retire(state.sequence)
        now = trio.current_time()
        self._resend(now)
        nxt = self.pending.get(self.landed_sequence + 1)
        if nxt is None or nxt.quorum_at is None:
            return
        if nxt.ready_at is None:
            # The takeover clock starts when it can land, not when its quorum formed (that
            # may be long before its predecessor landed): else every rank would be due.
            nxt.ready_at = now
        rank = (self.me - nxt.checkpoint.sequence) % self.n
        due = nxt.ready_at + rank * self.options.takeover_s
        retry_due = (nxt.submitted_at or -1e18) + self.options.takeover_s
        if now >= due and now >= retry_due:
            nxt.submitted_at = now
            await self._submit(nxt, rank)

    def _adopt(self, state: SettlementState) -> None:
        if not self._contract_read:
            self._contract_read = True
            if state.threshold != self.threshold:
                log.warning("contract threshold differs from genesis", contract=state.threshold)
                self.threshold = state.threshold
        if state.epoch != self.epoch:
            # A rotation: what we signed for the old epoch can never land; sign it again.
            log.warning("settlement epoch changed", old=self.epoch, new=state.epoch)
            self.epoch = state.epoch
            for sequence, old in list(self.pending.items()):
                cp = old.checkpoint
                fresh = Checkpoint(
                    state.epoch, cp.sequence, cp.state_root, cp.withdrawals_root, cp.last_deposit_id
                )
                self.pending[sequence] = self._sign(fresh)
        self.landed_sequence = max(self.landed_sequence, state.sequence)

    async def _retire(self, landed: int) -> None:
        done = [s for s in self.pending if s <= landed]
        if not done:
            return
        accepted = await self._thread(self._accepted_events)
        for sequence in done:
            pending = self.pending.pop(sequence)
            pending.landed = True
            self.counters["checkpoints_landed"] += 1
            event = accepted.get(sequence)
            if event is not None:
                tx_hash, onchain = event
                pending.submit_tx = pending.submit_tx or tx_hash
                if onchain != pending.checkpoint:
                    self.counters["checkpoint_landed_mismatch"] += 1
                    log.error(
                        "checkpoint_landed_mismatch",
                        alarm=True,
                        sequence=sequence,
                        ours=_describe(pending.checkpoint),
                        onchain=_describe(onchain),
                    )
            self.history[sequence] = pending
            log.info("checkpoint landed", sequence=sequence, tx=_hex(pending.submit_tx))
        while len(self.history) > self.options.history:
            self.history.popitem(last=False)
        for early in self._early.values():
            for sequence in [s for s in early if s <= landed]:
                del early[sequence]

    def _accepted_events(self) -> dict[int, tuple[bytes, Checkpoint]]:
        """Blocking: CheckpointAccepted events since the last scan (tx hash, checkpoint)."""
        assert self.settlement is not None
        head = int(self.settlement.w3.eth.block_number)
        start = self._events_from
        if start is None:
            start = max(0, head - self.options.event_lookback_blocks)
        out: dict[int, tuple[bytes, Checkpoint]] = {}
        for e in self.settlement.events(start, head):
            if e.name == "CheckpointAccepted":
                a = e.args
                out[a["sequence"]] = (
                    e.tx_hash,
                    Checkpoint(
                        a["epoch"],
                        a["sequence"],
                        bytes(a["stateRoot"]),
                        bytes(a["withdrawalsRoot"]),
                        a["lastDepositId"],
                    ),
                )
        self._events_from = head + 1
        return out

    async def _submit(self, pending: PendingCheckpoint, rank: int) -> None:
        assert self.settlement is not None
        settlement = self.settlement
        cp = pending.checkpoint
        chosen = {a: pending.signatures[a] for a in sorted(pending.signatures)[: self.threshold]}

        def submit() -> bytes | None:
            if settlement.state().sequence >= cp.sequence:
                return None  # landed meanwhile: idempotent
            try:
                return settlement.submit_checkpoint(
                    self._key, cp, self.sorted_members, chosen
                ).tx_hash
            except Reverted as exc:
                if exc.name == "UnexpectedSequence" and settlement.state().sequence >= cp.sequence:
                    return None  # another member landed it first
                raise

        log.info("submitting checkpoint", sequence=cp.sequence, rank=rank)
        try:
            tx_hash = await self._thread(submit)
        except Reverted as exc:
            self.counters["submit_failures"] += 1
            log.error("checkpoint submission reverted", sequence=cp.sequence, error=str(exc))
            return
        except Exception as exc:
            self.counters["submit_failures"] += 1
            log.warning("checkpoint submission failed", sequence=cp.sequence, error=repr(exc))
            return
        if tx_hash is not None:
            pending.submit_tx = tx_hash
            self.counters["checkpoints_submitted"] += 1
            log.info("checkpoint submitted", sequence=cp.sequence, tx=_hex(tx_hash))
        self._wake.set()  # retire it at once

    # ------------------------------------------------------------ helpers

    def _sign(self, cp: Checkpoint) -> PendingCheckpoint:
        digest = checkpoint_digest(self.chain_id, self.contract, cp)
        pending = PendingCheckpoint(cp, digest)
        pending.signatures[self.address] = sign(self._key, digest)
        return pending

    def _broadcast(self, pending: PendingCheckpoint) -> None:
        pending.sent_at = trio.current_time()
        self.send_all(signature_message(pending.checkpoint, pending.signatures[self.address]))

    def _resend(self, now: float) -> None:
        for pending in self.pending.values():
            if pending.sent_at is None or now - pending.sent_at >= self.options.resend_s:
                self._broadcast(pending)

    def _check_quorum(self, pending: PendingCheckpoint) -> None:
        if pending.quorum_at is None and len(pending.signatures) >= self.threshold:
            pending.quorum_at = trio.current_time()
            log.info("checkpoint quorum", sequence=pending.checkpoint.sequence)
            self._wake.set()

    async def _thread(self, fn: Callable[[], Any]) -> Any:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def _describe(cp: Checkpoint) -> dict[str, Any]:
    return {
        "epoch": cp.epoch,
        "state_root": "0x" + cp.state_root.hex(),
        "withdrawals_root": "0x" + cp.withdrawals_root.hex(),
        "last_deposit_id": cp.last_deposit_id,
    }
