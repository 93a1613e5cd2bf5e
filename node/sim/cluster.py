"""A deterministic cluster: N consensus cores, a simulated clock and network, one seed.

The simulation plays the node runtime for every core: it carries out their actions
(persist to an in-memory "disk" that survives crashes, send through the network model,
arm timers, answer NeedPayload, record commits) and feeds back their events. One
`random.Random(seed)` decides the fault plan and every later choice, so a seed replays
the same run; the trace digest proves it.

Phases (TigerBeetle's VOPR, FoundationDB's simulator, Diem's twins):
1. Safety phase: drops, duplicates, delays with tails (reordering), partitions that
   change over time, crashes and restarts of honest nodes (some cut in the middle of an
   action list, between a persist and a send), silent nodes and Byzantine twins.
2. Liveness phase: the network heals, crashed nodes restart, only the <= f Byzantine
   keys stay faulty. Every honest node must commit a block above everything committed
   before the heal within a bounded number of rounds.

Checks after every step: honest nodes never commit different blocks at one height (so
every honest log is a prefix of the longest), every commit extends the node's own log
by the next height and links to its parent, an honest key never signs two different
votes in one round (across restarts too), honest messages always verify, and honest
nodes whose leader election is settled for a round name the same leader for it. The one
honest message that may fail verification is a proposal its author made while its
election was not settled (it was behind): a receiver that is settled refuses it.

Each node runs its own leader election (reputation by default, `Knobs.election`), fed by
its core's commits and, on every boot, seeded from the committed log on its disk: the
election is node state like any other.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from consensus.actions import (
    Action,
    Broadcast,
    Commit,
    Misbehavior,
    NeedPayload,
    PersistBlock,
    PersistSafety,
    ScheduleTimeout,
    Send,
    leads_persists,
)
from consensus.block_store import serve_request
from consensus.committee import Committee
from consensus.core import Core, CoreConfig, Recovery
from consensus.crypto import Ed25519Scheme, Ed25519Signer, SignatureScheme, Signer
from consensus.errors import InvalidMessage, WrongProposer
from consensus.events import Event, MessageReceived, PayloadReady, Start, TimerFired
from consensus.leader_election import LeaderElection, LeaderReputation, RoundRobin
from consensus.safety_data import SafetyData
from consensus.types import (
    Block,
    BlockRequest,
    QuorumCert,
    Vote,
    decode_message,
    encode_message,
    genesis_block,
    genesis_qc,
)
from consensus.verifier import Verifier
from node.sim.fastcrypto import InsecureScheme, InsecureSigner
from node.sim.plan import FaultPlan

CHAIN_ID = b"seqnet-sim"
MAX_BACKOFF_EXPONENT = 4
LIVENESS_TARGET_BLOCKS = 1  # new blocks above the pre-heal maximum, on every honest node


def liveness_round_bound(n: int) -> int:
    """Rounds after the heal within which every honest node must commit a new block.

    Round-robin puts 3 consecutive honest leaders (what a 2-chain commit needs) in any
    window of n + 2 rounds while at most f keys are faulty; the rest is slack for the
    nodes to converge on one round (a TC or two) and for restarted nodes to catch up.
    Leader reputation keeps the argument: its candidates are members that took part in
    recent committed blocks, and after 2 rounds without a commit past its cutoff it is
    round-robin again, which lagging nodes also name. Over seeds 0-3399 the worst case
    seen was 7 rounds for n = 4 and 9 for n = 7 with round-robin, 6 and 16 with
    reputation (that tail: a restarted node waiting on a block fetch while 2 ms rounds
    go by; fewer runs than round-robin's need 5 rounds or more).
    """
    return 2 * n + 6


class Violation(Exception):
    """A broken safety or liveness property: the simulation's verdict."""


@dataclass(slots=True)
class Disk:
    """What a node's storage keeps across crashes (the runtime's job, here in memory)."""

    safety: bytes
    root: Block
    proof: QuorumCert
    blocks: dict[bytes, Block] = field(default_factory=dict)
    log: list[bytes] = field(default_factory=list)  # committed ids, index = height - 1


@dataclass(slots=True)
class Instance:
    key: int
    name: str  # "3" or, for twins, "3a" / "3b"
    honest: bool
    disk: Disk
    skew_ms: int
    core: Core | None = None  # None while crashed (or never started: silent)
    verifier: Verifier | None = None
    election: LeaderElection | None = None
    timer_token: int = 0
    crash_armed: bool = False
    restarts: int = 0


@dataclass(slots=True)
class SimStats:
    events: int = 0
    messages: int = 0
    dropped: int = 0
    crashes: int = 0
    commits: int = 0
    misbehavior: int = 0
    wrong_proposer: int = 0  # honest proposals refused: their author's election lagged
    max_round: int = 0
    heal_round: int = 0
    heal_height: int = 0
    liveness_rounds: int = 0
    min_honest_height: int = 0
    end_ms: int = 0


@dataclass(frozen=True, slots=True)
class Knobs:
    crypto: str = "fast"  # "fast" (insecure hash "signatures") or "ed25519"
    unsafe_skip_vote_rules: bool = False
    unsafe_one_chain_commit: bool = False
    unsafe_amnesia: bool = False  # restart nodes with an empty safety record
    election: str = "reputation"  # or "round-robin"


PayloadSource = Callable[[str, int], tuple[bytes, ...]]  # (instance name, round) -> entries


class Simulation:
    def __init__(
        self,
        plan: FaultPlan,
        rng: random.Random,
        knobs: Knobs,
        payload: PayloadSource | None = None,
    ) -> None:
        self.plan = plan
        self._payload_source = payload
        self.rng = rng
        self.knobs = knobs
        self.stats = SimStats()
        self.now_ms = 0
        self._queue: list[tuple[int, int, str, Any]] = []
        self._seq = 0
        self._trace = hashlib.sha256()
        self._healed = False
        self._partition: dict[int, int] = {}  # key -> group; empty = no partition
        self._canonical: dict[int, Block] = {}  # height -> block, over honest nodes
        self._leaders: dict[int, int] = {}  # round -> leader, as settled honest nodes name it
        self._honest_votes: dict[tuple[int, int], bytes] = {}  # (key, round) -> block id
        seeds = [hashlib.sha256(b"sim-key-%d" % i).digest() for i in range(plan.n)]
        self._signers: list[Signer]
        self._scheme: SignatureScheme
        if knobs.crypto == "ed25519":
            self._signers = [Ed25519Signer(s) for s in seeds]
            self._scheme = Ed25519Scheme()
        else:
            self._signers = [InsecureSigner(s) for s in seeds]
            self._scheme = InsecureScheme()
        self.committee = Committee(tuple(s.public_key for s in self._signers), CHAIN_ID)
        assert knobs.election in ("reputation", "round-robin"), knobs.election
        self._config = CoreConfig(
            base_timeout_ms=plan.base_timeout_ms,
            fetch_retry_ms=plan.base_timeout_ms,
            max_backoff_exponent=MAX_BACKOFF_EXPONENT,
            unsafe_skip_vote_rules=knobs.unsafe_skip_vote_rules,
            unsafe_one_chain_commit=knobs.unsafe_one_chain_commit,
        )
        genesis = genesis_block(CHAIN_ID)
        self._genesis_id = genesis.id
        self.instances: list[Instance] = []
        for key in range(plan.n):
            copies = 2 if key in plan.twins else 1
            for copy in range(copies):
                name = str(key) if copies == 1 else f"{key}{'ab'[copy]}"
                honest = key not in plan.twins and key not in plan.silent
                disk = Disk(SafetyData().encode(), genesis, genesis_qc(genesis))
                skew = rng.randint(-plan.skew_ms, plan.skew_ms)
                self.instances.append(Instance(key, name, honest, disk, skew))
        self._by_key: dict[int, list[Instance]] = {}
        for inst in self.instances:
            self._by_key.setdefault(inst.key, []).append(inst)

    # ================================================================ running

    def run(self) -> SimStats:
        plan = self.plan
        for inst in self.instances:
            if inst.key not in plan.silent:
                self._boot(inst)
        if plan.crash_gap_ms:
            self._schedule(self._gap(plan.crash_gap_ms), "crash", None)
        if plan.partition_gap_ms and plan.n > 1:
            self._schedule(self._gap(plan.partition_gap_ms), "partition", None)
        self._schedule(plan.safety_ms, "heal", None)
        deadline_ms: int | None = None
        while self._queue:
            at_ms, _, kind, data = heapq.heappop(self._queue)
            if deadline_ms is not None and at_ms > deadline_ms:
                raise Violation(self._liveness_failure("time"))
            self.now_ms = at_ms
            self.stats.events += 1
            self._step(kind, data)
            if kind == "heal":
                deadline_ms = self.now_ms + self._liveness_deadline_ms()
            if self._healed and self._live():
                break
        else:
            raise Violation(self._liveness_failure("no events left"))
        self._final_checks()
        self.stats.end_ms = self.now_ms
        return self.stats

    def run_until_height(self, height: int) -> None:
        """No faults, no phases: boot every node and run until all reach `height`
        (the benchmark's loop)."""
        for inst in self.instances:
            self._boot(inst)
        while min(len(i.disk.log) for i in self.instances) < height:
            at_ms, _, kind, data = heapq.heappop(self._queue)
            self.now_ms = at_ms
            self._step(kind, data)

    # ---------------------------------------------------------------- scripted runs
    # No phases and no heal: a test boots the nodes, schedules outages and runs to a time.

    def start(self) -> None:
        for inst in self.instances:
            if inst.key not in self.plan.silent:
                self._boot(inst)

    def outage(self, key: int, at_ms: int, down_ms: int | None = None) -> None:
        """Crash every instance of `key` at `at_ms`; restart it `down_ms` later (never
        if None)."""
        self._schedule(at_ms, "outage", (key, down_ms))

    def run_until_ms(self, end_ms: int) -> None:
        while self._queue and self._queue[0][0] <= end_ms:
            at_ms, _, kind, data = heapq.heappop(self._queue)
            self.now_ms = at_ms
            self.stats.events += 1
            self._step(kind, data)
        self.now_ms = max(self.now_ms, end_ms)

    def canonical_chain(self) -> list[Block]:
        """The blocks honest nodes committed, by height from 1 (each committed by at
        least one of them)."""
        chain: list[Block] = []
        while len(chain) + 1 in self._canonical:
            chain.append(self._canonical[len(chain) + 1])
        return chain

    def digest(self) -> str:
        return self._trace.hexdigest()

    def _step(self, kind: str, data: Any) -> None:
        self._trace.update(b"%d %s|" % (self.now_ms, kind.encode()))
        if kind == "deliver":
            inst, sender, frame = data
            self._deliver(inst, sender, frame)
        elif kind == "timer":
            inst, token, round_ = data
            if inst.core is not None and inst.timer_token == token:
                self._feed(inst, TimerFired(round_))
        elif kind == "payload":
            inst, round_, restarts = data
            if inst.core is not None and inst.restarts == restarts:
                self._feed(inst, PayloadReady(round_, self._payload(inst, round_)))
        elif kind == "crash":
            self._crash_some()
        elif kind == "restart":
            inst = data
            if inst.core is None and not self._healed:
                self._boot(inst)
        elif kind == "partition":
            self._repartition()
        elif kind == "outage":
            key, down_ms = data
            for inst in self._by_key[key]:
                if inst.core is not None:
                    self._crash(inst, down_ms, stay_down=down_ms is None)
        else:
            assert kind == "heal"
            self._heal()

    # ================================================================ nodes

    def _boot(self, inst: Instance) -> None:
        disk = inst.disk
        amnesia = self.knobs.unsafe_amnesia and inst.restarts > 0
        recovery = Recovery(
            safety=SafetyData() if amnesia else SafetyData.decode(disk.safety),
            root=disk.root,
            blocks=tuple(b for b in disk.blocks.values() if b.round > disk.root.round),
            high_qc=disk.proof,
        )
        election = self._election(disk)
        inst.core = Core(
            self.committee,
            inst.key,
            self._signers[inst.key],
            self._config,
            election,
            recovery,
        )
        inst.election = election
        inst.verifier = Verifier(self.committee, self._scheme, election)
        inst.crash_armed = False
        self._feed(inst, Start())

    def _election(self, disk: Disk) -> LeaderElection:
        """A booting node's election, seeded from its committed log as the runtime's is."""
        if self.knobs.election == "round-robin":
            return RoundRobin(self.plan.n)
        election = LeaderReputation(self.plan.n)
        tail = disk.log[-election.history_blocks :]
        election.seed([disk.blocks[block_id] for block_id in tail])
        return election

    def _feed(self, inst: Instance, event: Event) -> None:
        assert inst.core is not None
        actions = inst.core.handle(event, self.now_ms + inst.skew_ms)
        _check_persist_first(actions)
        cut = len(actions)
        if inst.crash_armed:
            cut = self.rng.randint(0, len(actions))
        for action in actions[:cut]:
            self._execute(inst, action)
        if inst.crash_armed:
            self._crash(inst)
        status = inst.core.status() if inst.core is not None else None
        if status is not None:
            self.stats.max_round = max(self.stats.max_round, status.round)
            if inst.honest:
                self._check_leaders(inst, status.round)

    def _execute(self, inst: Instance, action: Action) -> None:
        if isinstance(action, PersistSafety):
            inst.disk.safety = action.data.encode()
        elif isinstance(action, PersistBlock):
            inst.disk.blocks[action.block.id] = action.block
        elif isinstance(action, Send):
            self._check_vote(inst, action.msg)
            self._send(inst, [action.to], encode_message(action.msg))
        elif isinstance(action, Broadcast):
            self._check_vote(inst, action.msg)
            others = [k for k in range(self.plan.n) if k != inst.key]
            self._send(inst, others, encode_message(action.msg))
        elif isinstance(action, Commit):
            self._commit(inst, action)
        elif isinstance(action, ScheduleTimeout):
            inst.timer_token += 1
            at_ms = max(self.now_ms, action.at_ms - inst.skew_ms)
            self._schedule(at_ms, "timer", (inst, inst.timer_token, action.round))
        elif isinstance(action, NeedPayload):
            data = (inst, action.round, inst.restarts)
            self._schedule(self.now_ms + self.plan.payload_delay_ms, "payload", data)
        else:
            assert isinstance(action, Misbehavior)
            self.stats.misbehavior += 1

    def _payload(self, inst: Instance, round_: int) -> tuple[bytes, ...]:
        if self._payload_source is not None:
            return self._payload_source(inst.name, round_)
        count = self.rng.randint(0, 3)
        return tuple(b"%s:%d:%d" % (inst.name.encode(), round_, i) for i in range(count))

    def _crash(self, inst: Instance, down_ms: int | None = None, stay_down: bool = False) -> None:
        inst.core = None
        inst.verifier = None
        inst.election = None
        inst.crash_armed = False
        inst.restarts += 1
        self.stats.crashes += 1
        if stay_down:
            return
        if down_ms is None:
            lo, hi = self.plan.down_ms
            down_ms = self.rng.randint(lo, hi)
        self._schedule(self.now_ms + down_ms, "restart", inst)

    def _crash_some(self) -> None:
        if self._healed:
            return
        candidates = [i for i in self.instances if i.honest and i.core is not None]
        if candidates:
            inst = self.rng.choice(candidates)
            if self.plan.mid_list_crash and self.rng.random() < 0.5:
                inst.crash_armed = True  # dies part-way through its next action list
            else:
                self._crash(inst)
        self._schedule(self.now_ms + self._gap(self.plan.crash_gap_ms), "crash", None)

    # ================================================================ network

    def _send(self, src: Instance, keys: list[int], frame: bytes) -> None:
        plan = self.plan
        rng = self.rng
        for key in keys:
            for dst in self._by_key[key]:
                self.stats.messages += 1
                if self._cut(src.key, key) or rng.randrange(1000) < plan.drop_permille:
                    self.stats.dropped += 1
                    continue
                copies = 2 if rng.randrange(1000) < plan.dup_permille else 1
                for _ in range(copies):
                    self._schedule(self.now_ms + self._delay(), "deliver", (dst, src.key, frame))

    def _delay(self) -> int:
        plan = self.plan
        if self.rng.randrange(1000) < plan.tail_permille:
            return self.rng.randint(plan.delay_ms[1], plan.tail_ms)
        return self.rng.randint(*plan.delay_ms)

    def _cut(self, a: int, b: int) -> bool:
        part = self._partition
        return bool(part) and part.get(a) != part.get(b)

    def _deliver(self, inst: Instance, sender: int, frame: bytes) -> None:
        # crc32, not sha256: the trace needs to tell runs apart, not to resist forgery, and
        # hashing every 100 kB proposal again would show up in the benchmark.
        self._trace.update(b"%d %s" % (zlib.crc32(frame), inst.name.encode()))
        if inst.core is None:
            return
        msg = decode_message(frame)
        if isinstance(msg, BlockRequest):
            # The runtime answers from its disk, which keeps blocks the core has pruned.
            response = serve_request(inst.disk.blocks, msg)
            if response is not None:
                self._send(inst, [sender], encode_message(response))
            return
        assert inst.verifier is not None
        try:
            verified = inst.verifier.verify(sender, msg)
        except WrongProposer as exc:
            if self.knobs.election == "round-robin":
                raise Violation(
                    f"node {inst.name} rejected a message from {sender}: {exc!r}"
                ) from exc
            # The sender proposed with an unsettled election (settled ones agree: checked
            # in _check_leaders), the receiver's is settled. That round is lost, no more.
            self.stats.wrong_proposer += 1
            return
        except InvalidMessage as exc:
            raise Violation(f"node {inst.name} rejected a message from {sender}: {exc!r}") from exc
        self._feed(inst, MessageReceived(verified))

    def _repartition(self) -> None:
        if self._healed:
            return
        rng = self.rng
        shape = rng.choice(("none", "split", "isolate"))
        keys = list(range(self.plan.n))
        if shape == "none":
            self._partition = {}
        elif shape == "isolate":
            lonely = rng.choice(keys)
            self._partition = {k: int(k == lonely) for k in keys}
        else:
            self._partition = {k: rng.randint(0, 1) for k in keys}
        self._trace.update(repr(sorted(self._partition.items())).encode())
        self._schedule(self.now_ms + self._gap(self.plan.partition_gap_ms), "partition", None)

    def _heal(self) -> None:
        self._healed = True
        self._partition = {}
        self.plan = _healed_plan(self.plan)
        for inst in self.instances:
            inst.crash_armed = False
            if inst.key not in self.plan.silent and inst.core is None:
                self._boot(inst)
        honest = self._honest()
        self.stats.heal_height = max((len(i.disk.log) for i in honest), default=0)
        self.stats.heal_round = max((self._round(i) for i in honest), default=0)

    # ================================================================ checks

    def _commit(self, inst: Instance, commit: Commit) -> None:
        disk = inst.disk
        self.stats.commits += len(commit.blocks)
        for block in commit.blocks:
            expected = len(disk.log) + 1
            if block.height != expected:
                raise Violation(
                    f"node {inst.name} committed height {block.height}, expected {expected}"
                )
            parent = disk.log[-1] if disk.log else self._genesis_id
            if block.parent_id != parent:
                raise Violation(f"node {inst.name} committed a block not extending its log")
            disk.log.append(block.id)
            if inst.honest:
                known = self._canonical.setdefault(block.height, block)
                if known.id != block.id:
                    raise Violation(
                        f"SAFETY: node {inst.name} committed {block.id.hex()[:16]} at height "
                        f"{block.height}, another honest node committed {known.id.hex()[:16]}"
                    )
        # The runtime stores the new root atomically with the commit.
        disk.root = commit.blocks[-1]
        disk.proof = commit.proof
        self._trace.update(b"commit %s %d" % (inst.name.encode(), len(disk.log)))

    def _check_vote(self, inst: Instance, msg: object) -> None:
        if not inst.honest or not isinstance(msg, Vote):
            return
        earlier = self._honest_votes.setdefault((inst.key, msg.round), msg.vote_data.block_id)
        if earlier != msg.vote_data.block_id:
            raise Violation(f"SAFETY: honest node {inst.name} voted twice in round {msg.round}")

    def _check_leaders(self, inst: Instance, round_: int) -> None:
        """Settled honest elections agree: the property reputation's liveness rests on."""
        election = inst.election
        assert election is not None
        for r in (round_, round_ + 1):
            if not election.settled(r):
                continue
            leader = election.leader(r)
            named = self._leaders.setdefault(r, leader)
            if named != leader:
                raise Violation(
                    f"ELECTION: node {inst.name} names {leader} leader of round {r}, "
                    f"another settled honest node named {named}"
                )

    def _final_checks(self) -> None:
        logs = [i.disk.log for i in self._honest()]
        longest = max(logs, key=len, default=[])
        for log in logs:
            if log != longest[: len(log)]:
                raise Violation("SAFETY: an honest log is not a prefix of the longest")
        self.stats.min_honest_height = min((len(log) for log in logs), default=0)

    def _live(self) -> bool:
        target = self.stats.heal_height + LIVENESS_TARGET_BLOCKS
        honest = self._honest()
        if not all(len(i.disk.log) >= target for i in honest):
            return False
        rounds = max(self._round(i) for i in honest) - self.stats.heal_round
        self.stats.liveness_rounds = rounds
        if rounds > liveness_round_bound(self.plan.n):
            raise Violation(self._liveness_failure(f"{rounds} rounds"))
        return True

    def _liveness_failure(self, why: str) -> str:
        heights = {i.name: len(i.disk.log) for i in self.instances}
        rounds = {i.name: self._round(i) for i in self.instances}
        return (
            f"LIVENESS: no commit above height {self.stats.heal_height} on every honest node "
            f"within {liveness_round_bound(self.plan.n)} rounds of the heal ({why}); "
            f"heights={heights} rounds={rounds}"
        )

    def _liveness_deadline_ms(self) -> int:
        max_timeout_ms = self.plan.base_timeout_ms
        for _ in range(MAX_BACKOFF_EXPONENT):
            max_timeout_ms = max_timeout_ms * 3 // 2
        return (liveness_round_bound(self.plan.n) + 2) * max_timeout_ms + 2000

    # ================================================================ helpers

    def _honest(self) -> list[Instance]:
        return [i for i in self.instances if i.honest]

    @staticmethod
    def _round(inst: Instance) -> int:
        return 0 if inst.core is None else inst.core.status().round

    def _schedule(self, at_ms: int, kind: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ms, self._seq, kind, data))

    def _gap(self, mean_ms: int) -> int:
        return self.rng.randint(mean_ms // 2, mean_ms * 3 // 2)


def _check_persist_first(actions: list[Action]) -> None:
    """No vote or timeout (what the safety record guards) leaves before a persist in the
    same list; a proposal may (consensus/core.py `_persist_first`)."""
    sent = False
    for action in actions:
        if isinstance(action, Send | Broadcast) and not leads_persists(action):
            sent = True
        elif sent and isinstance(action, PersistSafety | PersistBlock):
            raise Violation(f"{type(action).__name__} after a send in one action list")


def _healed_plan(plan: FaultPlan) -> FaultPlan:
    """The liveness phase keeps delays (and their tails) but loses no messages."""
    return replace(plan, drop_permille=0, crash_gap_ms=0, partition_gap_ms=0)
