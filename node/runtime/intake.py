"""Intake: signed intents from clients (through the API) and from peers (forwarded), into
the mempool.

Each intent is verified once per member (`EntryVerifier`, cached by its bytes), its
signer checked against the latest executed state (the account itself or an approved
agent), its nonce against the replay window; then it is admitted to the mempool and,
when it came from a client, forwarded to the other members, who verify it themselves.
Resubmitting is idempotent: an intent already committed gets its outcome, one already
pending gets `accepted`. One committed so long ago that its outcome is no longer kept
(Outcomes keeps the last OUTCOMES_KEPT) but whose nonce the engine still keeps is refused
here, `nonce_reused`, instead of entering the log a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import trio

from matching.accounts import NONCE_FUTURE_MS, NONCE_PAST_MS, NONCE_SET_SIZE
from matching.engine import Engine
from node.api.facade import SubmitResult
from node.fairness.envelope import decode_envelope
from node.fairness.errors import FairnessError
from node.intents import Domain, Entry, IntentError, SignedIntent, check_signer, pack_intent
from node.mempool import AddResult, Mempool, PoolItem
from node.payload import intent_entry
from node.runtime.outcomes import Outcomes
from node.runtime.verification import (
    THREAD_BATCH_MIN,
    EntryVerifier,
    VerifiedEnvelope,
    check_envelope_entry,
)

CANCEL_TYPES = frozenset(("cancel", "cancel_cloid", "cancel_all"))

_FULL_MESSAGES = {
    AddResult.ACCOUNT_FULL: "too many pending intents for this signing key; retry later",
    AddResult.POOL_FULL: "the node's mempool is full; retry later",
}


class Intake:
    def __init__(
        self,
        *,
        verifier: EntryVerifier,
        outcomes: Outcomes,
        mempool: Mempool,
        is_authorized: Callable[[bytes, bytes], bool],
        used_nonce: Callable[[bytes, bytes, int], str | None],
        now_ms: Callable[[], int],
        forward: Callable[[list[bytes]], None],
        max_forward_batch: int,
        counters: dict[str, int],
    ) -> None:
        self._verifier = verifier
        self._outcomes = outcomes
        self.mempool = mempool
        # (account, signer) -> may sign, as of the latest executed block: read at each
        # use, since execution moves on while a batch is being verified.
        self._is_authorized = is_authorized
        self._used_nonce = used_nonce  # likewise
        self._now_ms = now_ms
        self._forward = forward
        self._forward_envelopes: Callable[[list[bytes]], None] = lambda envelopes: None
        self._max_forward_batch = max_forward_batch
        self._counters = counters
        self.nonempty = trio.Event()  # set while the mempool holds something

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        results = await self.admit(intents, forward=True)
        return await self.wait_for(results, wait, timeout_s)

    async def wait_for(
        self, results: list[SubmitResult], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        """With `wait`, each accepted result replaced by its outcome (or `timeout`)."""
        if wait:
            with trio.move_on_after(timeout_s):
                for i, result in enumerate(results):
                    if result.status == "accepted":
                        results[i] = await self._outcomes.wait(result.intent_id)
            results = [
                SubmitResult(r.intent_id, "timeout", None, "not committed in time", None)
                if r.status == "accepted"
                else r
                for r in results
            ]
        return results

    async def admit(
        self, intents: list[SignedIntent], forward: bool, raws: list[bytes] | None = None
    ) -> list[SubmitResult]:
        """Verify (once per node: cached by entry bytes), check that the signer may sign
        for the account as of our latest executed state, check the replay window, admit
        to the mempool, and forward what is new to the other members. `forward` is False
        for intents a peer forwarded: then nothing is forwarded, and intents admitted
        have no result in the list (nobody reads them).

        Nothing is set aside by its intent id before its signer is known: the id does not
        cover the signature, so a copy with a damaged signature shares it and recovers
        some other key. That copy, or any forgery, is refused here (`unauthorized_signer`)
        before it can take a mempool slot, be forwarded or be charged to anyone; only an
        outcome already committed for the id answers early, and `Outcomes` records those
        for authorized entries only."""
        if raws is None:
            raws = [intent_entry(pack_intent(si)) for si in intents]
        verifier = self._verifier
        results: list[SubmitResult | None] = [None] * len(intents)
        entries: list[tuple[int, Entry, bytes]] = []
        fresh: list[tuple[int, SignedIntent, bytes]] = []
        fresh_ids: list[bytes] = []
        for i, (si, raw) in enumerate(zip(intents, raws, strict=True)):
            known = verifier.known(raw)
            intent_id = known.intent_id if known is not None else si.digest(verifier.domain)
            done = self._outcomes.result(intent_id)
            if done is not None:
                results[i] = replace(done, duplicate=True)
            elif known is not None:
                entries.append((i, known, raw))
            else:
                fresh.append((i, si, raw))
                fresh_ids.append(intent_id)
        verified = await verifier.verify([si for _, si, _ in fresh], fresh_ids)
        for (i, _, raw), intent_id, entry in zip(fresh, fresh_ids, verified, strict=True):
            if isinstance(entry, IntentError):
                results[i] = SubmitResult(intent_id, "rejected", entry.code, entry.message, None)
            else:
                entries.append((i, entry, raw))
        fresh_raws = self._add(entries, results, forward)
        if fresh_raws:
            step = self._max_forward_batch
            for start in range(0, len(fresh_raws), step):
                self._forward(fresh_raws[start : start + step])
        return [r for r in results if r is not None]

    def _add(
        self,
        entries: list[tuple[int, Entry, bytes]],
        results: list[SubmitResult | None],
        forward: bool,
    ) -> list[bytes]:
        """Admit verified entries; fills `results`, returns the packed intents to forward."""
        admitted = 0
        fresh_raws: list[bytes] = []
        now = self._now_ms()
        for i, entry, raw in entries:
            try:
                check_signer(entry, self._is_authorized)
            except IntentError as error:
                results[i] = SubmitResult(entry.intent_id, "rejected", error.code, error.message)
                continue
            self._verifier.remember(raw, entry)  # authorized only: forgeries evict nothing
            is_cancel = entry.action["type"] in CANCEL_TYPES
            item = PoolItem(
                entry.intent_id, entry.account, entry.signer, entry.nonce, is_cancel, raw
            )
            results[i], added = self._pool(item, forward, now)
            if added:
                admitted += 1
                if forward:
                    fresh_raws.append(raw[1:])
        if admitted:
            self._counters["intents_admitted"] += admitted
            self.nonempty.set()
        return fresh_raws

    def _pool(self, item: PoolItem, forward: bool, now: int) -> tuple[SubmitResult | None, bool]:
        """The replay window, the engine's kept nonces, then the mempool, for an item
        whose signer is authorized: (its result, whether it was added). An added item of
        a peer's forward has no result (nobody reads it)."""
        if not now - NONCE_PAST_MS <= item.nonce <= now + NONCE_FUTURE_MS:
            message = f"nonce {item.nonce} is not a millisecond time within the replay window"
            return SubmitResult(item.intent_id, "rejected", "nonce_out_of_window", message), False
        used = self._used_nonce(item.account, item.signer, item.nonce)
        if used is not None:
            message = (
                f"nonce {item.nonce} of 0x{item.signer.hex()} was used by an intent "
                "committed earlier (its outcome is no longer kept)"
                if used == "nonce_reused"
                else f"nonce {item.nonce} is older than every nonce the engine keeps "
                "for this signer"
            )
            return SubmitResult(item.intent_id, "rejected", used, message), False
        added = self.mempool.add(item)
        if added is AddResult.ADDED:
            return (SubmitResult(item.intent_id, "accepted") if forward else None), True
        if added is AddResult.DUPLICATE:
            pending = self.mempool.pending(item.signer, item.nonce)
            if pending is None or pending.intent_id == item.intent_id:
                return SubmitResult(item.intent_id, "accepted", duplicate=True), False
            message = f"another pending intent of this signer has nonce {item.nonce}"
            return SubmitResult(item.intent_id, "rejected", "duplicate_nonce", message), False
        return (
            SubmitResult(item.intent_id, "rejected", added.value, _FULL_MESSAGES[added]),
            False,
        )

    async def admit_envelopes(
        self, raws: list[bytes], forward: bool, epoch: int | None, grace_epoch: int | None = None
    ) -> list[SubmitResult]:
        """Encrypted intents (payload entries 0x05 ‖ envelope, PROTOCOL.md §10.3) from a
        client or a peer, checked from the header alone: the signature recovers a signer
        that is the account or one of its agents, the KEM proof holds, the epoch is the
        committee key's (`epoch`; None: this committee takes no encrypted intents) or, in a
        re-key's grace, the previous key's (`grace_epoch`), the
        nonce is in the window and unused; then the mempool and, from a client, the
        other members. As for plain intents, nothing is charged or kept for an envelope
        whose signer is not authorized. The content stays sealed."""
        results: list[SubmitResult] = []
        fresh: list[bytes] = []
        admitted = 0
        failed = await self._check_envelopes(raws) if epoch is not None else {}
        now = self._now_ms()
        for raw in raws:
            result, added = self._admit_envelope(
                raw, forward, epoch, now, failed.get(raw), grace_epoch
            )
            if added:
                admitted += 1
                if forward:
                    fresh.append(raw[1:])
            if result is not None:
                results.append(result)
        if admitted:
            self._counters["intents_admitted"] += admitted
            self.nonempty.set()
        step = self._max_forward_batch
        for start in range(0, len(fresh), step):
            self._forward_envelopes(fresh[start : start + step])
        return results

    async def _check_envelopes(self, raws: list[bytes]) -> dict[bytes, FairnessError]:
        """Check the envelopes not seen yet (signer recovery and KEM proof: about three
        scalar multiplications each) in worker threads, as plain intents' signatures
        are, and fill the verifier's cache with the good ones; returns why the others
        failed. A few are checked in line by `_admit_envelope` (a hand-off costs more)."""
        verifier = self._verifier
        todo = list({raw: None for raw in raws if raw not in verifier.envelopes})
        if verifier.threads < 2 or len(todo) < THREAD_BATCH_MIN:
            return {}
        step = -(-len(todo) // verifier.threads)
        parts = [todo[i : i + step] for i in range(0, len(todo), step)]
        results: list[list[VerifiedEnvelope | FairnessError]] = [[] for _ in parts]

        async def part(i: int) -> None:
            results[i] = await trio.to_thread.run_sync(check_envelopes, parts[i], verifier.domain)

        async with trio.open_nursery() as nursery:
            for i in range(len(parts)):
                nursery.start_soon(part, i)
        failed: dict[bytes, FairnessError] = {}
        for raw, result in zip(todo, (r for chunk in results for r in chunk), strict=True):
            if isinstance(result, FairnessError):
                failed[raw] = result
            else:
                verifier.envelopes.put(raw, result, len(raw))
        return failed

    def _admit_envelope(
        self,
        raw: bytes,
        forward: bool,
        epoch: int | None,
        now: int,
        failed: FairnessError | None = None,
        grace_epoch: int | None = None,
    ) -> tuple[SubmitResult | None, bool]:
        try:
            envelope_id = decode_envelope(raw[1:]).digest(self._verifier.domain)
        except FairnessError as error:
            return SubmitResult(raw[1:33], "rejected", error.code, error.message), False
        done = self._outcomes.result(envelope_id)
        if done is not None:
            return replace(done, duplicate=True), False
        if epoch is None:
            message = "this committee publishes no key for encrypted intents"
            return SubmitResult(envelope_id, "rejected", "no_committee_key", message), False
        try:
            if failed is not None:
                raise failed
            checked = self._verifier.envelope(raw)
        except FairnessError as error:
            return SubmitResult(envelope_id, "rejected", error.code, error.message), False
        envelope = checked.envelope
        if envelope.epoch not in (epoch, grace_epoch):
            message = f"sealed to epoch {envelope.epoch}; the committee key is epoch {epoch}"
            return SubmitResult(envelope_id, "rejected", "wrong_epoch", message), False
        if checked.signer != envelope.account and not self._is_authorized(
            envelope.account, checked.signer
        ):
            self._verifier.envelopes.pop(raw)  # forgeries evict nothing
            message = "the envelope's signer is neither its account nor an approved agent"
            return SubmitResult(envelope_id, "rejected", "unauthorized_signer", message), False
        item = PoolItem(envelope_id, envelope.account, checked.signer, envelope.nonce, False, raw)
        return self._pool(item, forward, now)

    def take_batch(self, limit: int, max_bytes: int, exclude: set[bytes]) -> list[PoolItem]:
        """The proposer's batch (cancels first), leaving out ids already in flight."""
        items = self.mempool.take_batch(limit, max_bytes, exclude=exclude)
        if not len(self.mempool):
            self.nonempty = trio.Event()
        return items


def check_envelopes(raws: list[bytes], domain: Domain) -> list[VerifiedEnvelope | FairnessError]:
    """Each envelope entry checked, or why not (pure: runs in a worker thread)."""
    out: list[VerifiedEnvelope | FairnessError] = []
    for raw in raws:
        try:
            out.append(check_envelope_entry(raw, domain))
        except FairnessError as error:
            out.append(error)
    return out


def used_nonce(engine: Engine, account: bytes, signer: bytes, nonce: int) -> str | None:
    """Would the engine refuse this (signer, nonce) as used? "nonce_reused" if it is
    among the signer's kept nonces, "nonce_too_old" if below all of them with the set
    full (matching/accounts.py `use_nonce`, without recording anything); else None."""
    state = engine.accounts.get(account)
    if state is None:
        return None
    raw = state.raw_nonces if signer == account else state.agent_nonces.get(signer)
    if not raw:
        return None
    kept = raw[-NONCE_SET_SIZE:]
    if nonce > kept[-1]:
        return None  # the usual case: a new, higher nonce
    if nonce in kept:
        return "nonce_reused"
    if len(kept) >= NONCE_SET_SIZE and nonce < kept[0]:
        return "nonce_too_old"
    return None
