"""Share recovery: a member without its share of the current committee key gets it back.

A member derives its share of a DKG key from the qualified dealings, at the committed
block that finishes the run (node/fairness/keying.py). A member restored by a snapshot
taken after that block (snapshot sync, or a wiped data directory) never sees those
dealings: the key record is replicated state, the dealings are not. Without this room it
would order and execute but make no decryption shares for that epoch.

So: while the keying state says a key is current and our share file for its epoch is
absent, this room asks one peer at a time (`"kq"`, PROTOCOL.md §10.10) for the run's
qualified dealings, which every member keeps in storage for the current and the
previous key (`save_dealings`, written when the key is made or recovered). The answer
(`"kd"`) is judged against the replicated key record alone (`recover_share`): the
dealings' commitments must hash to the record's transcript, and the share they give us
must match our verification key. A peer that sends something else is penalized; a
silent one is skipped after `retry_s`; either only delays us (the next peer is asked).
The share is then stored like one the DKG made (0600, fsynced) and handed to the share
exchange.

This room is node I/O; what it decides is in keying.py (pure).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgpack
import trio

from node.fairness.errors import FairnessError
from node.fairness.keying import RECOVERY_PEER_FAULTS, KeyRecord, MemberKeying
from node.fairness.threshold import KeyShare
from node.net.messages import MAX_DEALINGS, MAX_EPOCH, Dealings
from node.runtime.decryption import off_loop
from node.runtime.logger import log
from node.seam import NodeStorage, PeerNetwork
from node.store.storage import WriteBatch

RETRY_S: Final = 1.0  # a peer that has not answered by then is skipped
# After the run's authentic dealings did not open for us, share repair is in charge; we
# still ask now and then (a peer may have changed a sealed share: another's would open).
UNOPENED_RETRY_S: Final = 30.0
DEALINGS_META: Final = "dkg-dealings"  # storage meta key: [[epoch, [dealing, ...]], ...]
KEPT_EPOCHS: Final = 2  # the current key's run and the previous one's


def save_dealings(storage: NodeStorage, epoch: int, dealings: list[bytes]) -> None:
    """Keep the qualified dealings of epoch `epoch`'s run (in qualified order) for peers
    that recover their share; only the newest KEPT_EPOCHS runs are kept."""
    kept = dict(_load_dealings(storage))
    kept[epoch] = dealings
    newest = sorted(kept)[-KEPT_EPOCHS:]
    wire = [[e, kept[e]] for e in newest]
    storage.write(WriteBatch(meta={DEALINGS_META: msgpack.packb(wire, use_bin_type=True)}))


def load_dealings(storage: NodeStorage, epoch: int) -> list[bytes] | None:
    return dict(_load_dealings(storage)).get(epoch)


def _load_dealings(storage: NodeStorage) -> list[tuple[int, list[bytes]]]:
    raw = storage.load_meta(DEALINGS_META)
    if raw is None:
        return []
    return [(epoch, list(dealings)) for epoch, dealings in msgpack.unpackb(raw, raw=False)]


_SHARE_FILE: Final = re.compile(r"epoch-(\d+)\.key")


def prune_shares(directory: Path, oldest_kept: int) -> list[int]:
    """Delete our share files (`epoch-E.key`) of keys older than `oldest_kept`: the
    previous key's epoch while a re-key's grace may still need it, else the current's.
    No envelope of an older key opens any more (PROTOCOL.md §10.9). Returns the epochs
    deleted; the directory is fsynced after."""
    if not directory.is_dir():
        return []
    deleted = []
    for path in directory.iterdir():
        match = _SHARE_FILE.fullmatch(path.name)
        if match is not None and int(match.group(1)) < oldest_kept:
            path.unlink()
            deleted.append(int(match.group(1)))
    if deleted:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return sorted(deleted)


class ShareRecovery:
    def __init__(
        self,
        *,
        me: int,
        members: int,
        network: PeerNetwork,
        storage: NodeStorage,
        member_keying: Callable[[], MemberKeying | None],
        has_share: Callable[[int], bool],
        on_recovered: Callable[[int, KeyShare], None],
        counters: dict[str, int],
        retry_s: float = RETRY_S,
        on_unopened: Callable[[int], None] | None = None,
        unopened_retry_s: float = UNOPENED_RETRY_S,
    ) -> None:
        """`me`: our 0-based index; `member_keying`: our DKG side over the current keying
        state (it changes when a snapshot is installed); `has_share(epoch)`: whether our
        share of that epoch's key is stored; `on_recovered(epoch, share)` stores it and
        puts it to use; `on_unopened(epoch)`: the run's authentic dealings do not give us
        our share (a qualified dealer spoiled it): share repair takes over, and we ask
        again only every `unopened_retry_s` for that epoch (each answer costs curve work)."""
        self._me = me
        self._unopened_retry_s = unopened_retry_s
        self._unopened_epoch: int | None = None  # the last epoch whose dealings did not open
        self._on_unopened = on_unopened
        self._members = members
        self._network = network
        self._storage = storage
        self._member_keying = member_keying
        self._has_share = has_share
        self._on_recovered = on_recovered
        self._counters = counters
        self._retry_s = retry_s
        self._next_peer = (me + 1) % members
        self._asked: tuple[int, int] | None = None  # (peer, epoch) awaiting an answer
        self._reply: tuple[int, Dealings] | None = None
        self._reply_ready = trio.Event()
        self._logged_epoch: int | None = None
        for name in (
            "share_recovery_requests",
            "share_recovery_refused",
            "share_recovery_unopened",
            "share_recovery_recovered",
        ):
            counters.setdefault(name, 0)

    def wanted(self) -> KeyRecord | None:
        """The current key record when we lack our share of it."""
        member = self._member_keying()
        if member is None:
            return None
        record = member.keying.current
        if record is None or self._has_share(record.epoch):
            return None
        return record

    async def run(self) -> None:
        """One request per `retry_s` at most, whatever the answers: a peer that answers
        at once with dealings that cost us the curve work cannot make us ask faster."""
        while True:
            record = self.wanted()
            if record is None:
                self._asked = None
                await trio.sleep(self._retry_s)
                continue
            pause = self._unopened_retry_s if record.epoch == self._unopened_epoch else 0.0
            if pause:
                await trio.sleep(pause)
                if self.wanted() != record:
                    continue
            deadline = trio.current_time() + self._retry_s
            self._reply_ready = trio.Event()
            self._ask(record.epoch)
            with trio.move_on_at(deadline):
                await self._reply_ready.wait()
            reply, self._reply, self._asked = self._reply, None, None
            if reply is not None:
                await self._judge(*reply)
            if self.wanted() is not None:
                await trio.sleep_until(deadline)

    def _ask(self, epoch: int) -> None:
        if self._members < 2:
            return
        peer = self._next_peer
        if peer == self._me:
            peer = (peer + 1) % self._members
        self._next_peer = (peer + 1) % self._members
        self._asked = (peer, epoch)
        self._counters["share_recovery_requests"] += 1
        if self._logged_epoch != epoch:
            self._logged_epoch = epoch
            log.warning("no share of the committee key: asking peers for its dealings", epoch=epoch)
        self._network.send(peer, ["kq", epoch])

    def on_dealings(self, peer: int, message: Dealings) -> None:
        """A `"kd"` answer (dispatcher): kept for the task if it is the one we await;
        anything else (late, unasked) is dropped unread."""
        if self._asked != (peer, message.epoch) or self._reply is not None:
            return
        self._asked = None
        self._reply = (peer, message)
        self._reply_ready.set()

    async def _judge(self, peer: int, message: Dealings) -> None:
        record = self.wanted()
        member = self._member_keying()
        if record is None or member is None or record.epoch != message.epoch:
            return
        dealings = list(message.dealings)
        try:
            share = await off_loop(len(dealings), member.recover_share, record, dealings)
        except FairnessError as error:
            if error.code in RECOVERY_PEER_FAULTS:
                self._counters["share_recovery_refused"] += 1
                self._network.penalize(peer, f"dealings for share recovery: {error.code}")
            else:
                self._counters["share_recovery_unopened"] += 1
                self._unopened_epoch = record.epoch
                if self._on_unopened is not None:
                    self._on_unopened(record.epoch)
            log.warning(
                "share recovery: dealings refused",
                peer=peer,
                epoch=record.epoch,
                code=error.code,
                error=error.message,
            )
            return
        if self.wanted() != record:
            return  # the key changed meanwhile, or the share came another way
        save_dealings(self._storage, record.epoch, dealings)
        self._on_recovered(record.epoch, share)
        self._counters["share_recovery_recovered"] += 1
        log.info("committee key share recovered", epoch=record.epoch, peer=peer)

    def serve(self, peer: int, epoch: int) -> None:
        """A peer asks for the dealings of `epoch`'s run: those we keep, or nothing."""
        assert 0 <= epoch <= MAX_EPOCH
        dealings = load_dealings(self._storage, epoch)
        if dealings is not None and len(dealings) <= MAX_DEALINGS:
            self._network.send(peer, ["kd", epoch, dealings])
