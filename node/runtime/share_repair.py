"""Share repair: t members give a member its share of the current committee key when the
run's authentic dealings cannot (PROTOCOL.md §10.11).

Share recovery (share_recovery.py) fails for a member whose sealed share a qualified
dealer spoiled while it was away: the dealings verify against the key record, but its
share does not open (`unopened`/`wrong_share`). Recovery reports that here, and this
room repairs the share instead: it names t helpers (the first after us in round robin,
preferring connected ones and those not suspected before) and a fresh session id
(`"kr"`); each helper splits λⱼ(i)·xⱼ into t random pieces and sends one to each other
helper with its signed commitments (`"kp"`); each helper sends us the sum of the pieces
it got with the vectors it used (`"ks"`). node/fairness/repair.py (pure) checks each
step against public data, so a failed check names the member at fault, who is
penalized; a helper that got a bad piece tells us (`"kf"`, a hint, not proof). A failed
or silent session only delays us: one session per `round_s`, and the next one avoids
the members that failed or stayed silent. The share is stored like a recovered one.

As a helper, this room answers only for the current key, only with its own stored
share, at most one session per requester at a time and one new one per `min_interval_s`;
all state is bounded by the committee size (one session and one slot of early pieces per
requester), and a session's pieces are dropped when it ends or after `session_s`.

This room is node I/O; what it decides is in node/fairness/repair.py.
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from node.fairness.errors import FairnessError
from node.fairness.group import N, scalar_bytes
from node.fairness.keying import KeyRecord, MemberKeying
from node.fairness.repair import (
    SID_BYTES,
    Fault,
    HelperRound,
    Repaired,
    RepairSession,
    RequesterRound,
    Sign,
    deal,
)
from node.fairness.threshold import KeyShare
from node.net.messages import RepairFault, RepairPiece, RepairRequest, RepairSum
from node.runtime.logger import log
from node.seam import PeerNetwork

ROUND_S: Final = 2.0  # a session not finished by then is abandoned; one per ROUND_S
SESSION_S: Final = 5.0  # a helper drops a session's pieces after this, finished or not
MIN_INTERVAL_S: Final = 0.5  # a helper starts at most one session per requester per this
DEALT_KEPT: Final = 64  # per requester, the session ids we dealt for (~2 min of sessions)
PROVEN: Final = 1_000  # suspicion of a member proven at fault: never picked again


def fresh_randoms(count: int) -> list[int]:
    """`count` scalars in 1 … N−1 from the OS CSPRNG (the pieces' randomness)."""
    return [secrets.randbelow(N - 1) + 1 for _ in range(count)]


@dataclass(slots=True)
class _Helping:
    round: HelperRound
    started: float


@dataclass(slots=True)
class _Early:
    """Pieces that arrived before the requester's `"kr"` (other links are faster)."""

    sid: bytes
    started: float
    pieces: dict[int, RepairPiece] = field(default_factory=dict)


class ShareRepair:
    def __init__(
        self,
        *,
        me: int,
        members: int,
        network: PeerNetwork,
        member_keying: Callable[[], MemberKeying | None],
        has_share: Callable[[int], bool],
        load_share: Callable[[KeyRecord], KeyShare | None],
        on_repaired: Callable[[int, KeyShare], None],
        identity_keys: Sequence[bytes],
        sign: Sign,
        counters: dict[str, int],
        round_s: float = ROUND_S,
        session_s: float = SESSION_S,
        min_interval_s: float = MIN_INTERVAL_S,
        randoms: Callable[[int], list[int]] = fresh_randoms,
    ) -> None:
        """`me`: our 0-based index; `member_keying`: our DKG side over the current keying
        state; `has_share(epoch)`: whether our share of it is stored; `load_share(record)`:
        our stored share of that key (None: we have none and do not help);
        `on_repaired(epoch, share)` stores it and puts it to use; `identity_keys`: the
        members' Ed25519 keys (genesis order); `sign`: ours."""
        assert len(identity_keys) == members
        self._me = me
        self._members = members
        self._network = network
        self._member_keying = member_keying
        self._has_share = has_share
        self._load_share = load_share
        self._on_repaired = on_repaired
        self._identity_keys = tuple(identity_keys)
        self._sign = sign
        self._counters = counters
        self._round_s = round_s
        self._session_s = session_s
        self._min_interval_s = min_interval_s
        self._randoms = randoms
        # Requester side.
        self._needed: int | None = None  # epoch whose authentic dealings did not open
        self._round: RequesterRound | None = None
        # Our recent sessions' ids: a helper may answer one up to `session_s` after it
        # ended (then it drops the session), and such a late answer is no fault.
        self._previous_sids: deque[bytes] = deque(maxlen=math.ceil(session_s / round_s) + 1)
        self._done = trio.Event()
        self._suspicion = [0] * members  # per member (0-based), for the current epoch
        self._suspicion_epoch: int | None = None
        # Helper side: bounded by the committee size.
        self._helping: dict[int, _Helping] = {}  # requester (0-based) -> its session
        self._early: dict[int, _Early] = {}  # requester (0-based) -> early pieces
        self._last_request = [float("-inf")] * members
        # Per requester, the session ids we dealt for: a repeated "kr" must not make us
        # deal again (the other helpers would see two pieces from us and blame us).
        self._dealt: list[deque[bytes]] = [deque(maxlen=DEALT_KEPT) for _ in range(members)]
        for name in (
            "share_repair_sessions",
            "share_repair_repaired",
            "share_repair_refused",
            "share_repair_helped",
            "share_repair_throttled",
        ):
            counters.setdefault(name, 0)

    # -- requester ---------------------------------------------------------------------

    def dealings_unopened(self, epoch: int) -> None:
        """Share recovery judged the run's authentic dealings and our share did not open:
        only a repair gives us that epoch's share."""
        if self._needed != epoch:
            log.warning("our share does not open from the authentic dealings: repairing it")
        self._needed = epoch

    def wanted(self) -> KeyRecord | None:
        """The current key record when we lack our share and recovery cannot give it."""
        member = self._member_keying()
        if member is None:
            return None
        record = member.keying.current
        if record is None or record.epoch != self._needed or self._has_share(record.epoch):
            return None
        return record

    async def run(self) -> None:
        """One session per `round_s` at most, whatever the answers; expired helper
        sessions are dropped on the same beat."""
        while True:
            self._expire(trio.current_time())
            record = self.wanted()
            member = self._member_keying()
            if record is None or member is None:
                await trio.sleep(self._round_s)
                continue
            deadline = trio.current_time() + self._round_s
            self._done = trio.Event()
            self._start(member, record)
            with trio.move_on_at(deadline):
                await self._done.wait()
            self._end()
            if self.wanted() is not None:
                await trio.sleep_until(deadline)

    def _helpers(self, epoch: int, threshold: int) -> tuple[int, ...]:
        """t members (1-based): round robin after us, the least suspected first, then
        connected ones first."""
        if self._suspicion_epoch != epoch:
            self._suspicion_epoch = epoch
            self._suspicion = [0] * self._members
        live = self._network.connected_peers()
        order = [(self._me + k) % self._members for k in range(1, self._members)]
        ranked = sorted(order, key=lambda p: (self._suspicion[p], p not in live, order.index(p)))
        return tuple(p + 1 for p in ranked[:threshold])

    def _start(self, member: MemberKeying, record: KeyRecord) -> None:
        params = member.keying.params
        threshold = params.threshold
        if self._members - 1 < threshold:
            return
        helpers = self._helpers(record.epoch, threshold)
        session = RepairSession(
            params.config(record.epoch).session,
            record.epoch,
            self._me + 1,
            secrets.token_bytes(SID_BYTES),
            helpers,
        )
        self._round = RequesterRound(session, record.key.verification_shares, self._identity_keys)
        self._counters["share_repair_sessions"] += 1
        log.info("share repair: asking helpers", epoch=record.epoch, helpers=list(helpers))
        for helper in helpers:
            self._network.send(helper - 1, ["kr", record.epoch, session.sid, list(helpers)])

    def _end(self) -> None:
        """The session is over (finished, failed or timed out): silent helpers are
        suspected, so the next session tries others first."""
        current = self._round
        if current is None:
            return
        if not self._done.is_set():
            for helper in current.session.helpers:
                if helper not in current.answered():
                    self._suspicion[helper - 1] += 1
        self._previous_sids.append(current.session.sid)
        self._round = None

    def _ours(self, peer: int, epoch: int, sid: bytes) -> RequesterRound | None:
        """The session an answer belongs to; a late one (of a recent session of ours) is
        dropped unread; anything else we never asked for is the sender's fault."""
        current = self._round
        if current is not None and sid == current.session.sid:
            if epoch != current.session.epoch:
                self._refuse(peer, "wrong_epoch", "an answer for another epoch")
                return None
            return current
        if sid not in self._previous_sids:
            self._refuse(peer, "unasked", "an answer to no session of ours")
        return None

    def on_sum(self, peer: int, message: RepairSum) -> None:
        """A helper's `"ks"` (dispatcher)."""
        current = self._ours(peer, message.epoch, message.sid)
        if current is None:
            return
        vectors = [(list(c), s) for c, s in message.vectors]
        outcome = current.receive(peer + 1, message.sigma, vectors)
        if isinstance(outcome, Fault):
            self._blame(peer, outcome)
            self._done.set()
        elif isinstance(outcome, Repaired):
            self._done.set()
            record = self.wanted()
            if record is None or record.epoch != current.session.epoch:
                return  # the key changed meanwhile, or the share came another way
            self._on_repaired(record.epoch, outcome.share)
            self._counters["share_repair_repaired"] += 1
            log.info(
                "committee key share repaired",
                epoch=record.epoch,
                helpers=list(current.session.helpers),
            )

    def on_fault(self, peer: int, message: RepairFault) -> None:
        """A helper says another sent it a bad piece: not proof, so nobody is penalized;
        both are suspected and the session (which cannot finish) ends."""
        current = self._ours(peer, message.epoch, message.sid)
        if current is None:
            return
        if peer + 1 not in current.session.helpers:
            self._refuse(peer, "unasked", "a fault report from a non-helper")
            return
        for member in (peer + 1, message.accused):
            if 1 <= member <= self._members:
                self._suspicion[member - 1] += 1
        self._done.set()

    def _blame(self, peer: int, fault: Fault) -> None:
        self._counters["share_repair_refused"] += 1
        if fault.member is None:
            log.error("share repair: the sums do not give our key", error=fault.detail)
            return
        culprit = fault.member - 1
        self._suspicion[culprit] += PROVEN
        self._network.penalize(culprit, f"share repair: {fault.code}")
        log.warning(
            "share repair: refused", peer=peer, culprit=culprit, code=fault.code, error=fault.detail
        )

    def _refuse(self, peer: int, code: str, detail: str) -> None:
        self._counters["share_repair_refused"] += 1
        self._network.penalize(peer, f"share repair: {code}")
        log.warning("share repair: refused", peer=peer, code=code, error=detail)

    # -- helper ------------------------------------------------------------------------

    def _current(self, epoch: int) -> tuple[MemberKeying, KeyRecord] | None:
        member = self._member_keying()
        record = None if member is None else member.keying.current
        if member is None or record is None or record.epoch != epoch:
            return None
        return member, record

    def on_request(self, peer: int, message: RepairRequest) -> None:
        """A member asks us to help repair its share (dispatcher; rate-limited there with
        the other requests that cost us work). Only the current key's, only with our own
        share, one session per requester at a time."""
        current = self._current(message.epoch)
        if current is None:
            return  # not the current key here: no answer
        member, record = current
        share = self._load_share(record)
        if share is None:
            return
        now = trio.current_time()
        if now - self._last_request[peer] < self._min_interval_s:
            self._counters["share_repair_throttled"] += 1
            return
        params = member.keying.params
        session = RepairSession(
            params.config(record.epoch).session,
            record.epoch,
            peer + 1,
            message.sid,
            message.helpers,
        )
        try:
            session.check(self._members, params.threshold)
            if self._me + 1 not in session.helpers:
                raise FairnessError("bad_helpers", "we are not one of the helpers")
        except FairnessError as error:
            self._refuse(peer, error.code, error.message)
            return
        if message.sid in self._dealt[peer]:
            self._refuse(peer, "replayed_session", "a session we already dealt for")
            return
        self._last_request[peer] = now
        self._dealt[peer].append(message.sid)
        try:
            own = deal(session, share, self._randoms(len(session.helpers) - 1), self._sign)
        except FairnessError:
            return  # a zero piece (2^-256): the requester asks again
        helping = HelperRound(
            session, self._me + 1, own, record.key.verification_shares, self._identity_keys
        )
        self._helping[peer] = _Helping(helping, now)
        for helper, piece in zip(session.helpers, own.pieces, strict=True):
            if helper != self._me + 1:
                wire = [
                    "kp",
                    record.epoch,
                    peer + 1,
                    session.sid,
                    list(own.commitments),
                    own.signature,
                    scalar_bytes(piece),
                ]
                self._network.send(helper - 1, wire)
        early = self._early.pop(peer, None)
        if early is not None and early.sid == session.sid:
            for sender, piece_message in early.pieces.items():
                self._take_piece(sender, peer, piece_message)
        self._maybe_answer(peer)

    def on_piece(self, peer: int, message: RepairPiece) -> None:
        """Another helper's piece for a requester's session (dispatcher)."""
        requester = message.requester - 1
        if requester >= self._members or requester in (self._me, peer):
            self._refuse(peer, "bad_requester", f"a piece for member {message.requester}")
            return
        if self._current(message.epoch) is None:
            return  # not the current key here (a late piece): dropped
        helping = self._helping.get(requester)
        if helping is not None and helping.round.session.sid == message.sid:
            self._take_piece(peer, requester, message)
            self._maybe_answer(requester)
            return
        # Before the requester's "kr" reached us: kept (one slot per requester, at most
        # one piece per sender) until it does, or the slot expires.
        early = self._early.get(requester)
        if early is None or early.sid != message.sid:
            early = self._early[requester] = _Early(message.sid, trio.current_time())
        early.pieces.setdefault(peer, message)

    def _take_piece(self, peer: int, requester: int, message: RepairPiece) -> None:
        helping = self._helping.get(requester)
        if helping is None:
            return
        fault = helping.round.receive(
            peer + 1, message.commitments, message.signature, message.piece
        )
        if fault is None:
            return
        # The session cannot finish: drop it (and its pieces), tell the requester.
        del self._helping[requester]
        session = helping.round.session
        accused = fault.member if fault.member is not None else peer + 1
        if fault.code == "bad_signature":
            # The sender's own vector does not verify under our view of the session: the
            # requester may have named other helpers to it than to us, so no one is
            # proven at fault (the requester, whose session it is, sees the "kf").
            self._counters["share_repair_refused"] += 1
            log.warning(
                "share repair: a piece signed under another view of the session",
                peer=peer,
                requester=requester,
            )
        else:
            self._blame(peer, Fault(accused, fault.code, fault.detail))
        self._network.send(requester, ["kf", session.epoch, session.sid, accused])

    def _maybe_answer(self, requester: int) -> None:
        helping = self._helping.get(requester)
        if helping is None or not helping.round.complete():
            return
        del self._helping[requester]
        session = helping.round.session
        sigma, vectors = helping.round.answer()
        self._network.send(requester, ["ks", session.epoch, session.sid, sigma, vectors])
        self._counters["share_repair_helped"] += 1
        log.info("share repair: helped", requester=requester, epoch=session.epoch)

    def _expire(self, now: float) -> None:
        for requester in [r for r, h in self._helping.items() if now - h.started > self._session_s]:
            del self._helping[requester]
        for requester in [r for r, e in self._early.items() if now - e.started > self._session_s]:
            del self._early[requester]
