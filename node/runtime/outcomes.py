"""What became of committed intents: intent id -> (height, the engine's refusal or None),
and the clients waiting for an answer.

Replicated state, beside the engine's: filled from every block the engine applies (live,
replayed at start-up or taken by sync), kept for the last `OUTCOMES_KEPT` intents (a
protocol constant, so that every member holds the same index at the same height), and
carried in every member snapshot (`dump`/`load`). A client resubmitting an intent that
committed before a restart, or to another member, or to one that installed a snapshot
since, gets its real outcome. Kept compact: one tuple per intent; `SubmitResult`s are
built when asked.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import trio

from matching.events import Event as EngineEvent
from matching.events import Reason, Rejected
from node.api.facade import SubmitResult

# The intents whose outcome a resubmission is answered with, newest first: about 40 s of
# the committee's saturation throughput, hours at usual load. Older ones are refused by
# the engine's nonce check instead (docs/API.md). ~32 MB in memory, ~10 MB in a snapshot.
OUTCOMES_KEPT = 200_000


class Outcomes:
    def __init__(self, max_items: int = OUTCOMES_KEPT) -> None:
        self.max_items = max_items
        self._done: OrderedDict[bytes, tuple[int, Rejected | None]] = OrderedDict()
        # intent id -> [event, waiters on it]
        self._waiters: dict[bytes, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def record(
        self,
        height: int,
        intent_ids: Sequence[bytes | None],
        events: Sequence[Sequence[EngineEvent]],
    ) -> None:
        """One applied block: `intent_ids[i]` (None for a deposit) got `events[i]`.

        The outcome of an intent id is the first one of an entry its account authorized,
        and a success over an earlier refusal. An unauthorized entry is not the account's
        intent (a forgery, or a bad copy whose id is the genuine intent's: the id does not
        cover the signature), so it is nobody's outcome; a later copy is a replay."""
        done, waiters = self._done, self._waiters
        executed = (height, None)  # one tuple for every entry of the block that executed
        for intent_id, entry_events in zip(intent_ids, events, strict=True):
            if intent_id is None:
                continue
            if Rejected in map(type, entry_events):  # scanned in C: usually absent
                rejected = next(e for e in entry_events if type(e) is Rejected)
                if rejected.code == Reason.UNAUTHORIZED or intent_id in done:
                    continue
                done[intent_id] = (height, rejected)
            else:
                prior = done.get(intent_id)
                if prior is not None and prior[1] is None:
                    continue
                done[intent_id] = executed
            if waiters:  # none while a member catches up or replays
                waiting = waiters.pop(intent_id, None)
                if waiting is not None:
                    waiting[0].set()
        while len(done) > self.max_items:
            done.popitem(last=False)

    def dump(self) -> list[list[Any]]:
        """The index in recording order, canonical: [id, height, code, message] (code and
        message None for an intent that executed)."""
        return [
            [i, h, None, None] if r is None else [i, h, r.code, r.message]
            for i, (h, r) in self._done.items()
        ]

    def load(self, rows: list[Any]) -> None:
        """Replace the index by a `dump` (from our own snapshot, or one f + 1 members
        agree on: the rows are trusted, but their shape is still checked)."""
        done: OrderedDict[bytes, tuple[int, Rejected | None]] = OrderedDict()
        for row in rows[-self.max_items :]:
            intent_id, height, code, message = row
            if type(intent_id) is not bytes or type(height) is not int:
                raise ValueError("outcome row: id must be bytes and height an integer")
            done[intent_id] = (height, None if code is None else Rejected(code, message))
        self._done = done

    def result(self, intent_id: bytes) -> SubmitResult | None:
        """The outcome of a committed intent (None: not committed, or forgotten). An entry
        the engine refused (no funds, replayed nonce…) was committed all the same; it is
        reported as rejected, with the height at which that was decided."""
        done = self._done.get(intent_id)
        if done is None:
            return None
        height, rejected = done
        if rejected is None:
            return SubmitResult(intent_id, "committed", None, None, height)
        return SubmitResult(intent_id, "rejected", rejected.code, rejected.message, height)

    async def wait(self, intent_id: bytes) -> SubmitResult:
        """The outcome once the intent commits (the caller bounds the wait; a waiter
        that gives up leaves nothing behind)."""
        result = self.result(intent_id)
        if result is not None:
            return result
        waiting = self._waiters.get(intent_id)
        if waiting is None:
            waiting = self._waiters[intent_id] = [trio.Event(), 0]
        event = waiting[0]
        waiting[1] += 1
        try:
            await event.wait()
        finally:
            waiting[1] -= 1
            if not waiting[1] and self._waiters.get(intent_id) is waiting:
                del self._waiters[intent_id]
        return self.result(intent_id) or SubmitResult(intent_id, "accepted", None, None, None)

    def waiting(self) -> int:
        """Intents someone is waiting on (at most the API's concurrent requests)."""
        return len(self._waiters)
