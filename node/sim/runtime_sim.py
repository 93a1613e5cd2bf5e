"""The real runtime under the deterministic simulator (`seqnet sim --runtime`).

N `node.runtime.Node`s — the code `seqnet node run` runs — in one trio run, bound through
the I/O seam (node/seam.py) to a seeded in-memory network (node/sim/simnet.py), trio's
`MockClock` (virtual time: timers, sleeps and the wall clock all read it) and in-memory
stores that lose unsynced writes on a power cut (node/sim/simstore.py). With
`byzantine`, one member's keys belong to the actor of node/sim/byzantine.py.

One seed decides everything: the plan (`make_plan`), then every network, crash,
partition, traffic and attack choice, all from one `random.Random(seed)`; trio's own
scheduler is made deterministic too (`deterministic_trio`), so the trace digest (every
delivery and every commit) is the same for every run of a seed.

Phases (TigerBeetle's VOPR, FoundationDB's simulator):
1. faulty: delays with tails (reordering), drops, duplicates, partitions that change,
   crash-restarts of honest members (some with a power cut that loses unsynced writes;
   one member down at a time, so the rest go on and the restarted one must sync), signed
   trader intents submitted to the members, and the actor at work;
   then, in some seeds, an outage: one honest member stays down on a calm network while
   the rest go on, so that it restarts far behind;
2. healed: the network heals, crashed members restart, the actor goes quiet; every
   honest member must commit `LIVENESS_BLOCKS` blocks above the highest height committed
   before the heal within `liveness_bound_s` of virtual time: the pure simulator's round
   bound (node/sim/cluster.py) at the pacemaker's longest round, plus time to sync.
node/sim/runtime_check.py checks throughout: no honest runtime raises, safety, memory.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import random
import time
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import coincurve
import trio
import trio.testing
from nacl.signing import SigningKey

from consensus.core import CoreConfig
from consensus.pacemaker import Pacemaker
from matching.config import Genesis as ExchangeGenesis
from node.config import HostPort, NodeConfig
from node.genesis import ConsensusParams, Genesis, Member, NodeSetup, default_exchange
from node.intents import address_of_private_key, place_action, sign_intent
from node.keys import NodeKeys
from node.net.transport import TransportConfig
from node.runtime import Node, NodeOptions
from node.runtime.logger import log as runtime_log
from node.runtime.options import DEV_CHAIN_ID
from node.runtime.sync import LogSync
from node.sim.byzantine import ActorPlan, ByzantineActor
from node.sim.cluster import liveness_round_bound
from node.sim.runtime_check import (
    Checker,
    Failure,
    bind_member,
    capture_logs,
)
from node.sim.simnet import NO_BANS, LinkFaults, SimEndpoint, SimNetwork
from node.sim.simstore import SimStorage
from node.sim.sweep import report

START_WALL_MS = 1_700_000_000_000  # the virtual wall clock at virtual time 0
LIVENESS_BLOCKS = 2
SYNC_ALLOWANCE_S = 5.0  # beyond the rounds' bound: restarted members catching up
STUCK_SYNC_S = 10.0  # one sync longer than this (virtual) is a finding when liveness fails
MAX_BLOCK_ENTRIES = 64  # small, so that the actor's oversized payloads are cheap
SAMPLE_INTERVAL_S = 0.25
TRADERS = 6


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class RuntimePlan:
    seed: int
    n: int
    byzantine: int | None  # the actor's member index
    faults: LinkFaults
    partition_gap_ms: int  # mean time between partition changes; 0: none
    crash_gap_ms: int  # mean time between crashes of honest members; 0: none
    down_ms: tuple[int, int]
    power_loss_permille: int  # share of crashes that also lose unsynced writes
    wal_sync_ms: int  # how often the stores' journals become durable
    round_timeout_ms: int
    idle_block_ms: int
    checkpoint_interval_blocks: int
    snapshot_interval_blocks: int
    snapshot_sync_gap_blocks: int
    skew_ms: int  # each member's clock is off by up to this much
    intents: int
    faulty_ms: int
    outage_ms: int  # then one honest member down on a calm network this long; 0: none
    bans: bool  # the transport's bans (else every message reaches the peer boundary)
    actor: ActorPlan | None

    def describe(self) -> str:
        f = self.faults
        lo, hi = f.delay_ms
        parts = [
            f"n={self.n}",
            f"byzantine={self.byzantine}",
            f"delay={lo}-{hi}ms(+{f.tail_permille}‰ to {f.tail_ms}ms)",
            f"drop={f.drop_permille}‰",
            f"dup={f.dup_permille}‰",
            f"partition_gap={self.partition_gap_ms}ms",
            f"crash_gap={self.crash_gap_ms}ms",
            f"down={self.down_ms[0]}-{self.down_ms[1]}ms",
            f"power_loss={self.power_loss_permille}‰",
            f"wal_sync={self.wal_sync_ms}ms",
            f"timeout={self.round_timeout_ms}ms",
            f"idle_block={self.idle_block_ms}ms",
            f"checkpoint_every={self.checkpoint_interval_blocks}",
            f"snapshot_every={self.snapshot_interval_blocks}",
            f"snapshot_gap={self.snapshot_sync_gap_blocks}",
            f"intents={self.intents}",
            f"faulty_phase={self.faulty_ms}ms",
            f"outage={self.outage_ms}ms",
            f"bans={'on' if self.bans else 'off'}",
        ]
        if self.actor is not None:
            a = self.actor
            parts.append(
                f"actor(tick={a.tick_ms[0]}-{a.tick_ms[1]}ms burst={a.burst} "
                f"hostile={a.hostile_permille}‰ forge_sync={a.forge_sync_permille}‰ "
                f"far_rounds={a.far_rounds})"
            )
        return " ".join(parts)


def make_plan(rng: random.Random, seed: int, n: int, byzantine: bool) -> RuntimePlan:
    hi = rng.choice((2, 5, 10, 20))
    lo = rng.randint(0, hi // 2)
    faults = LinkFaults(
        delay_ms=(lo, hi),
        tail_permille=rng.choice((0, 10, 50)),
        tail_ms=rng.choice((4 * hi, 10 * hi, 200)),
        drop_permille=rng.choice((0, 0, 10, 50)),
        dup_permille=rng.choice((0, 10, 50)),
    )
    actor = None
    if byzantine:
        actor = ActorPlan(
            tick_ms=rng.choice(((2, 10), (5, 30), (10, 60))),
            burst=rng.choice((1, 3, 6)),
            hostile_permille=rng.choice((100, 300, 600)),
            slice_ms=rng.choice((100, 300, 800)),
            mutate_permille=rng.choice((0, 300, 700)),
            forge_sync_permille=rng.choice((500, 1000)),
            far_rounds=rng.random() < 0.5,
        )
    snapshot_every = rng.choice((4, 8))
    return RuntimePlan(
        seed=seed,
        n=n,
        byzantine=rng.randrange(n) if byzantine else None,
        faults=faults,
        partition_gap_ms=rng.choice((0, 0, 300, 800)),
        crash_gap_ms=rng.choice((0, 400, 800, 1500)),
        down_ms=(50, rng.choice((200, 600, 1500))),
        power_loss_permille=rng.choice((0, 500, 1000)),
        wal_sync_ms=rng.choice((20, 100, 400)),
        round_timeout_ms=rng.choice((200, 300, 500)),
        idle_block_ms=rng.choice((30, 60)),
        checkpoint_interval_blocks=rng.choice((2, 3, 5)),
        snapshot_interval_blocks=snapshot_every,
        snapshot_sync_gap_blocks=rng.choice((snapshot_every + 2, 3 * snapshot_every, 5_000)),
        skew_ms=rng.choice((0, 0, 20, 100)),
        intents=rng.choice((0, 10, 30)),
        faulty_ms=rng.randint(2000, 4000),
        outage_ms=rng.choice((0, 1000, 2500)),
        bans=rng.random() < 0.5,
        actor=actor,
    )


# ---------------------------------------------------------------- the committee


@functools.cache
def member_keys(index: int) -> NodeKeys:
    """Fixed keys per member index: keys decide nothing a seed should vary."""
    identity = hashlib.sha256(b"seqnet sim identity %d" % index).digest()
    settlement = hashlib.sha256(b"seqnet sim settlement %d" % index).digest()
    return NodeKeys(f"node{index}", SigningKey(identity), coincurve.PrivateKey(settlement))


@functools.cache
def _exchange(fee_account: bytes) -> ExchangeGenesis:
    return default_exchange(fee_account)


def build_setups(plan: RuntimePlan) -> list[NodeSetup]:
    """The members' NodeSetups, in memory: no files, no chain (settlement is off)."""
    keys = [member_keys(i) for i in range(plan.n)]
    members = tuple(
        Member(f"node{i}", k.identity_public, k.settlement_address, "127.0.0.1", 20000 + i, 0)
        for i, k in enumerate(keys)
    )
    consensus = ConsensusParams(
        round_timeout_ms=plan.round_timeout_ms,
        max_block_entries=MAX_BLOCK_ENTRIES,
        checkpoint_interval_blocks=plan.checkpoint_interval_blocks,
    )
    genesis = Genesis(
        chain_id=DEV_CHAIN_ID,
        members=members,
        exchange=_exchange(members[0].settlement_address),
        consensus=consensus,
    )
    nowhere = Path("/nonexistent/seqnet-sim")
    setups = []
    for i, member in enumerate(members):
        config = NodeConfig(
            name=member.name,
            genesis=nowhere / "genesis.toml",
            data_dir=nowhere / member.name,
            identity_key=nowhere / "identity.key",
            settlement_key=nowhere / "settlement.key",
            consensus_listen=member.consensus_endpoint,
            api_listen=HostPort("127.0.0.1", 21000 + i),
            verify_threads=0,  # worker threads would break determinism
        )
        setups.append(NodeSetup(config, genesis, i, member, keys[i]))
    return setups


def node_options(plan: RuntimePlan, skew_ms: int) -> NodeOptions:
    return NodeOptions(
        idle_block_interval_ms=plan.idle_block_ms,
        wal_checkpoint_interval_s=0,  # no WAL task: the simulator syncs the stores
        snapshot_interval_blocks=plan.snapshot_interval_blocks,
        snapshot_sync_gap_blocks=plan.snapshot_sync_gap_blocks,
        sync_timeout_s=0.5,
        join_wait_s=0.2,
        clock_skew_ms=skew_ms,
    )


def liveness_bound_s(plan: RuntimePlan) -> float:
    """Virtual seconds after the heal within which every honest member must commit."""
    longest_round_ms = Pacemaker(
        plan.round_timeout_ms, CoreConfig().max_backoff_exponent, 1
    ).timeout_ms(2**62, 0)
    return liveness_round_bound(plan.n) * longest_round_ms / 1000 + SYNC_ALLOWANCE_S


def virtual_wall_ms() -> int:
    return START_WALL_MS + int(trio.current_time() * 1000)


# ---------------------------------------------------------------- determinism


@contextmanager
def deterministic_trio(seed: int) -> Iterator[None]:
    """trio shuffles each scheduler batch with a module-level Random; under Hypothesis
    it sorts the batch by task creation first, then shuffles. Do both, from the seed
    (as hypothesis-trio does), and put everything back afterwards."""
    run = trio._core._run
    state = run._r.getstate()
    flag = run._ALLOW_DETERMINISTIC_SCHEDULING
    run._r.seed(seed)
    setattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (Final in trio)
    try:
        yield
    finally:
        run._r.setstate(state)
        setattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING", flag)  # noqa: B010


@contextmanager
def unsafe_trusting_sync() -> Iterator[None]:
    """The deliberately broken variant: sync trusts a peer's claimed blocks without
    checking them (neither the chain link nor the QC). The checker must catch it."""
    original = LogSync.committed_prefix

    def trusting(self: LogSync, records: list[Any], proof: Any) -> int:
        return len(records)

    LogSync.committed_prefix = trusting  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        LogSync.committed_prefix = original  # type: ignore[method-assign]


# ---------------------------------------------------------------- the run


@dataclass(slots=True)
class RunStats:
    heights: list[int] = field(default_factory=list)  # final exec height per member
    heal_height: int = 0
    commits: int = 0
    crashes: int = 0
    power_losses: int = 0
    lost_writes: int = 0
    partitions: int = 0
    intents_submitted: int = 0
    entries_committed: int = 0
    syncs: int = 0
    snapshot_syncs: int = 0
    peer_messages_rejected: int = 0
    checkpoints_compared: int = 0
    liveness_ms: int | None = None
    longest_sync_s: float = 0.0  # the longest stretch a member spent syncing (virtual)
    messages: int = 0
    dropped: int = 0
    honest_penalties: int = 0
    bans: int = 0
    actor_sent: int = 0
    actor_by_entry: dict[str, int] = field(default_factory=dict)
    actor_unencodable: int = 0
    actor_forged_sync_replies: int = 0
    memory_max: dict[str, int] = field(default_factory=dict)
    memory_budget: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Slot:
    index: int
    storage: SimStorage
    options: NodeOptions
    node: Node | None = None
    scope: trio.CancelScope | None = None
    endpoint: SimEndpoint | None = None
    syncing_since: float | None = None
    started: bool = False  # a member has run from this store


class RuntimeSimulation:
    def __init__(self, plan: RuntimePlan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        self.trace = hashlib.sha256()
        self.setups = build_setups(plan)
        n = plan.n
        self.honest = frozenset(i for i in range(n) if i != plan.byzantine)
        self.checker = Checker(self.honest, self.trace)
        config = TransportConfig() if plan.bans else TransportConfig(ban_score=NO_BANS)
        self.net = SimNetwork(n, rng, plan.faults, self.trace, config)
        self.net.on_penalty = self.checker.on_penalty
        self.stats = RunStats()
        self.slots: list[_Slot] = []
        for i in range(n):
            skew = rng.randint(-plan.skew_ms, plan.skew_ms) if plan.skew_ms else 0
            storage = SimStorage(functools.partial(self.checker.on_commit, i))
            self.slots.append(_Slot(i, storage, node_options(plan, skew)))
        self.actor: ByzantineActor | None = None
        self._actor_scope: trio.CancelScope | None = None
        self._top: trio.Nursery | None = None
        self.virtual_s = 0.0

    # ------------------------------------------------------------ entry

    def run(self) -> None:
        clock = trio.testing.MockClock(autojump_threshold=0)
        with deterministic_trio(self.plan.seed), capture_logs(self._on_log):
            _probe_log_capture(self.checker)
            trio.run(self._main, clock=clock)
        self._collect()

    def _on_log(self, member: int | None, level: str, event: MutableMapping[str, Any]) -> None:
        self.checker.on_log(member, level, event)

    async def _main(self) -> None:
        plan = self.plan
        async with trio.open_nursery() as top:
            self._top = top
            top.start_soon(self._stop_on_failure, top.cancel_scope)
            top.start_soon(self.net.run)
            top.start_soon(self._wal_syncs)
            top.start_soon(self._sample_memory)
            for i in sorted(self.honest):
                self._start(i)
            if plan.byzantine is not None:
                self._start_actor(plan.byzantine)
            async with trio.open_nursery() as faulty:
                faulty.start_soon(self._crashes, faulty)
                faulty.start_soon(self._partitions)
                faulty.start_soon(self._traffic)
                await trio.sleep(plan.faulty_ms / 1000)
                faulty.cancel_scope.cancel()
            if plan.outage_ms:
                await self._outage()
            self._heal()
            await self._liveness()
            self._final_checks()
            self.virtual_s = trio.current_time()
            top.cancel_scope.cancel()
        self.virtual_s = trio.current_time()

    async def _stop_on_failure(self, scope: trio.CancelScope) -> None:
        await self.checker.failed.wait()
        self.virtual_s = trio.current_time()
        scope.cancel()

    # ------------------------------------------------------------ members

    def _start(self, i: int) -> None:
        slot = self.slots[i]
        endpoint = self.net.attach(i)
        try:
            node = Node(
                self.setups[i],
                slot.storage,
                slot.options,
                network=endpoint,
                clock=virtual_wall_ms,
                fresh=not slot.started,  # a restart keeps the store it crashed with
            )
            slot.started = True
        except Exception as exc:  # recovery from our own store failed: a finding
            self.checker.raised(i, "Node() from the surviving store", exc)
            return
        slot.node, slot.endpoint, slot.scope, slot.syncing_since = node, endpoint, None, None
        assert self._top is not None
        self._top.start_soon(self._run_member, i, node)

    async def _run_member(self, i: int, node: Node) -> None:
        slot = self.slots[i]
        if slot.node is not node:
            return  # crashed before it ever ran
        bind_member(i)
        with trio.CancelScope() as scope:
            slot.scope = scope
            try:
                await node.run()
            except BaseException as exc:
                error = _not_cancelled(exc)
                if error is None:
                    raise
                self.checker.raised(i, "Node.run", error)

    def _crash(self, i: int) -> None:
        slot = self.slots[i]
        node = slot.node
        if node is None:
            return
        self.checker.check_checkpoints(i, node)
        self._account(node)
        if slot.scope is not None:
            slot.scope.cancel()
        self.net.detach(i)
        slot.node = slot.scope = slot.endpoint = None
        power_loss = self.rng.randrange(1000) < self.plan.power_loss_permille
        self.stats.crashes += 1
        self.stats.power_losses += power_loss
        self.stats.lost_writes += slot.storage.crash(self.rng, power_loss)

    def _account(self, node: Node) -> None:
        """Counters of an incarnation that ends (crash or the end of the run)."""
        c = node.counters
        self.stats.syncs += c["syncs"]
        self.stats.snapshot_syncs += c["snapshot_syncs"]
        self.stats.peer_messages_rejected += c["peer_messages_rejected"]
        self.stats.entries_committed += c["entries_committed"]

    def _start_actor(self, b: int) -> None:
        plan = self.plan
        assert plan.actor is not None and self._top is not None
        setup = self.setups[b]
        endpoint = self.net.attach(b)
        actor = ByzantineActor(
            b,
            plan.n,
            bytes(setup.keys.identity),
            setup.genesis.genesis_hash(),  # the committee's chain id (Node.committee)
            endpoint,
            self.rng,
            plan.actor,
            virtual_wall_ms,
            MAX_BLOCK_ENTRIES,
        )
        self.actor = actor
        storage = SimStorage()
        actor.inner_storage = storage
        inner = Node(
            setup, storage, self.slots[b].options, network=actor.link(), clock=virtual_wall_ms
        )
        actor.leader_of = inner.election.leader
        self._top.start_soon(self._run_actor_node, inner)
        self._top.start_soon(actor.pump)
        self._top.start_soon(actor.attack)

    async def _run_actor_node(self, inner: Node) -> None:
        bind_member(-1)  # not honest: its logs are not checked
        with trio.CancelScope() as scope:
            self._actor_scope = scope
            try:
                await inner.run()
            except BaseException as exc:
                if _not_cancelled(exc) is None:
                    raise
                # the actor's own node may fail under the actor's games: not checked

    # ------------------------------------------------------------ faults

    async def _crashes(self, faulty: trio.Nursery) -> None:
        plan, rng = self.plan, self.rng
        if not plan.crash_gap_ms:
            return
        while True:
            await trio.sleep(rng.expovariate(1 / plan.crash_gap_ms) / 1000)
            if any(self.slots[i].node is None for i in self.honest):
                continue  # one honest member down at a time: the rest go on without it
            up = sorted(self.honest)
            victim = rng.choice(up)
            self._crash(victim)
            faulty.start_soon(self._restart_later, victim, rng.randint(*plan.down_ms) / 1000)

    async def _restart_later(self, i: int, down_s: float) -> None:
        await trio.sleep(down_s)
        if self.slots[i].node is None:
            self._start(i)

    async def _partitions(self) -> None:
        plan, rng, n = self.plan, self.rng, self.plan.n
        if not plan.partition_gap_ms:
            return
        while True:
            await trio.sleep(rng.expovariate(1 / plan.partition_gap_ms) / 1000)
            roll = rng.random()
            groups = [0] * n
            if roll < 0.5:
                groups[rng.randrange(n)] = 1  # one member cut off
            elif roll < 0.8:
                groups = [rng.randrange(2) for _ in range(n)]
            self.net.set_partition(groups)
            self.stats.partitions += 1

    async def _wal_syncs(self) -> None:
        while True:
            await trio.sleep(self.plan.wal_sync_ms / 1000)
            for slot in self.slots:
                slot.storage.sync()

    async def _traffic(self) -> None:
        """Signed trader intents, submitted through `Node.submit` to a running member."""
        plan, rng = self.plan, self.rng
        times = sorted(rng.uniform(0, plan.faulty_ms / 1000) for _ in range(plan.intents))
        start = trio.current_time()
        for k, at in enumerate(times):
            await trio.sleep_until(start + at)
            up = [i for i in sorted(self.honest) if self.slots[i].node is not None]
            if not up:
                continue
            i = rng.choice(up)
            node = self.slots[i].node
            assert node is not None
            key = _trader_key(rng.randrange(TRADERS))
            side = rng.choice(("buy", "sell"))
            price = rng.randint(290, 310) * 10_000
            action = place_action(0, side, price, rng.choice((10**5, 10**6)))
            intent = sign_intent(
                key, address_of_private_key(key), node.now_ms() + k, action, node.domain
            )
            self.stats.intents_submitted += 1
            try:
                await node.submit([intent], wait=False, timeout_s=1.0)
            except Exception as exc:
                self.checker.raised(i, "Node.submit", exc)

    async def _sample_memory(self) -> None:
        while True:
            await trio.sleep(SAMPLE_INTERVAL_S)
            for i in sorted(self.honest):
                self._sample(i)

    def _sample(self, i: int) -> None:
        slot = self.slots[i]
        if slot.node is not None:
            now = trio.current_time()
            if slot.node.status()["syncing"]:
                slot.syncing_since = now if slot.syncing_since is None else slot.syncing_since
                self.stats.longest_sync_s = max(
                    self.stats.longest_sync_s, round(now - slot.syncing_since, 3)
                )
            else:
                slot.syncing_since = None
            inbound = None if slot.endpoint is None else slot.endpoint.inbound
            self.checker.sample_memory(i, slot.node, inbound)

    async def _outage(self) -> None:
        """A calm network while one honest member stays down: the others go on without
        it, and at the heal it restarts far behind (log sync, or snapshot sync past
        `snapshot_sync_gap_blocks`)."""
        self.net.set_partition([0] * self.plan.n)
        self.net.faults = self.net.faults.healed()
        down = [i for i in sorted(self.honest) if self.slots[i].node is None]
        if not down:
            self._crash(self.rng.choice(sorted(self.honest)))
        await trio.sleep(self.plan.outage_ms / 1000)

    # ------------------------------------------------------------ heal and liveness

    def _heal(self) -> None:
        self.net.heal()
        if self.actor is not None:
            self.actor.go_quiet()
            if self._actor_scope is not None:
                self._actor_scope.cancel()
        for i in sorted(self.honest):
            if self.slots[i].node is None:
                self._start(i)
        self.stats.heal_height = self.checker.stats.max_height

    async def _liveness(self) -> None:
        target = self.stats.heal_height + LIVENESS_BLOCKS
        healed_at = trio.current_time()
        bound_s = liveness_bound_s(self.plan)
        with trio.move_on_after(bound_s):
            while True:
                nodes = [self.slots[i].node for i in sorted(self.honest)]
                if all(node is not None and node.exec_height >= target for node in nodes):
                    self.stats.liveness_ms = round((trio.current_time() - healed_at) * 1000)
                    return
                await trio.sleep(0.02)
        causes = self._diagnose()
        self.checker.fail(
            Failure(
                "LIVENESS",
                None,
                f"[{', '.join(sorted(causes)) or 'no diagnosis'}] {bound_s:.1f}s (virtual) "
                f"after the heal, not every honest member reached height {target} "
                f"(heal height {self.stats.heal_height}): {self._states()}",
            )
        )

    def _statuses(self) -> dict[int, dict[str, Any] | None]:
        """`Node.status()` of every honest member (None: down)."""
        return {
            i: None if self.slots[i].node is None else self.slots[i].node.status()  # type: ignore[union-attr]
            for i in sorted(self.honest)
        }

    def _diagnose(self) -> set[str]:
        """Why the committee did not go on, in the terms of issue 12's findings:
        - guard-above-committee: a member withholds its signatures up to a round that no
          honest member has reached (a round only some message claimed);
        - behind-not-syncing: a member lags the others' committed height and is not
          syncing (its missing blocks are committed, so no peer's tree serves them);
        - stuck-in-sync: a member spent longer than the bound of a sync in one sync or
          catch-up (node/runtime.py `_sync`, `_snapshot_sync`), not taking part meanwhile;
        - core-behind-log: a member's consensus core sits on a root below the height its
          engine executed (a sync moved the log, not the core), so it cannot vote.
        """
        statuses = {i: s for i, s in self._statuses().items() if s is not None}
        if not statuses:
            return {"all-down"}
        causes: set[str] = set()
        top_round = max(s["round"] for s in statuses.values())
        top_height = max(s["committed_height"] for s in statuses.values())
        for s in statuses.values():
            guard = s["vote_guard_round"]
            if guard is not None and guard > top_round + 1:
                causes.add("guard-above-committee")
            if s["committed_height"] < top_height and not s["syncing"]:
                causes.add("behind-not-syncing")
            if s["consensus_committed_height"] < s["committed_height"]:
                causes.add("core-behind-log")
        if self.stats.longest_sync_s > STUCK_SYNC_S:
            causes.add("stuck-in-sync")
        return causes

    def _states(self) -> str:
        parts = []
        for i, s in self._statuses().items():
            if s is None:
                parts.append(f"{i}: down")
                continue
            parts.append(
                f"{i}: height {s['committed_height']} round {s['round']} "
                f"high_qc {s['high_qc_round']} core_height {s['consensus_committed_height']} "
                f"guard {s['vote_guard_round']} syncing {s['syncing']}"
            )
        return "; ".join(parts)

    def _final_checks(self) -> None:
        for i in sorted(self.honest):
            node = self.slots[i].node
            if node is not None:
                self.checker.check_checkpoints(i, node)
                self._sample(i)

    def _collect(self) -> None:
        stats = self.stats
        stats.heights = [-1 if slot.node is None else slot.node.exec_height for slot in self.slots]
        for i in sorted(self.honest):
            node = self.slots[i].node
            if node is not None:
                self._account(node)
        checker = self.checker.stats
        stats.commits = checker.commits
        stats.checkpoints_compared = self.checker.checkpoints_compared
        stats.memory_max = dict(sorted(checker.memory_max.items()))
        stats.memory_budget = dict(sorted(checker.memory_budget.items()))
        stats.honest_penalties = checker.honest_penalties
        stats.messages = self.net.stats.delivered
        stats.dropped = self.net.stats.dropped
        stats.bans = self.net.stats.bans
        if self.actor is not None:
            stats.actor_sent = sum(self.actor.stats.sent.values())
            stats.actor_by_entry = dict(sorted(self.actor.stats.sent.items()))
            stats.actor_unencodable = self.actor.stats.unencodable
            stats.actor_forged_sync_replies = self.actor.stats.forged_sync_replies
        self.trace.update(repr(stats.heights).encode())

    def digest(self) -> str:
        return self.trace.hexdigest()


def _trader_key(i: int) -> bytes:
    return (0x5EED0000 + i).to_bytes(32, "big")


def _not_cancelled(exc: BaseException) -> BaseException | None:
    """The errors in `exc` once trio's cancellations are taken out; None when nothing
    is left or something must propagate as it is (KeyboardInterrupt and the like)."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None or rest.split(Exception)[1] is not None:
            return None
        return rest
    return exc if isinstance(exc, Exception) else None


def _probe_log_capture(checker: Checker) -> None:
    """The runtime's logger must reach the checker (a logger cached under an earlier
    structlog configuration would not): contained errors would go unseen."""
    before = checker.stats.warnings.get("sim log probe", 0)
    runtime_log.warning("sim log probe")
    if checker.stats.warnings.get("sim log probe", 0) != before + 1:
        raise RuntimeError("structlog output does not reach the simulator's checker")


# ---------------------------------------------------------------- seeds


@dataclass(frozen=True, slots=True)
class RuntimeSimResult:
    seed: int
    n: int
    byzantine: bool
    ok: bool
    failure: str | None
    traceback: str | None
    digest: str
    plan: str
    stats: RunStats
    wall_s: float
    virtual_s: float
    repro: str

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["stats"] = asdict(self.stats)
        return out


def repro_command(seed: int, nodes: int | None, byzantine: bool, unsafe: bool) -> str:
    parts = ["seqnet sim --runtime"]
    if byzantine:
        parts.append("--byzantine")
    parts.append(f"--seed {seed}")
    if nodes is not None:
        parts.append(f"--nodes {nodes}")
    if unsafe:
        parts.append("--unsafe-trust-sync")
    return " ".join(parts)


def run_seed(
    seed: int, nodes: int | None = None, byzantine: bool = False, unsafe_trust_sync: bool = False
) -> RuntimeSimResult:
    n = nodes if nodes is not None else 4
    rng = random.Random(seed)
    plan = make_plan(rng, seed, n, byzantine)
    sim = RuntimeSimulation(plan, rng)
    started = time.perf_counter()
    if unsafe_trust_sync:
        with unsafe_trusting_sync():
            sim.run()
    else:
        sim.run()
    failures = sim.checker.failures
    first = failures[0] if failures else None
    return RuntimeSimResult(
        seed=seed,
        n=n,
        byzantine=byzantine,
        ok=not failures,
        failure=None if first is None else str(first),
        traceback=None if first is None else first.traceback,
        digest=sim.digest(),
        plan=plan.describe(),
        stats=sim.stats,
        wall_s=time.perf_counter() - started,
        virtual_s=sim.virtual_s,
        repro=repro_command(seed, nodes, byzantine, unsafe_trust_sync),
    )


def run_seeds(
    first: int,
    count: int,
    nodes: int | None = None,
    byzantine: bool = False,
    unsafe_trust_sync: bool = False,
    jobs: int = 1,
) -> Iterator[RuntimeSimResult]:
    """Results in seed order; with jobs > 1 in worker processes (same results)."""
    seeds = range(first, first + count)
    one = functools.partial(
        run_seed, nodes=nodes, byzantine=byzantine, unsafe_trust_sync=unsafe_trust_sync
    )
    if jobs <= 1:
        for seed in seeds:
            yield one(seed)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(one, seeds, chunksize=max(1, min(4, count // (jobs * 4))))


# ---------------------------------------------------------------- `seqnet sim --runtime`


def cli_run(args: argparse.Namespace) -> int:
    """`seqnet sim --runtime [--byzantine] --seeds K [--seed S]` (node/sim/cli.py)."""
    results = run_seeds(
        args.seed, args.seeds, args.nodes, args.byzantine, args.unsafe_trust_sync, args.jobs
    )
    return report(args, results, _describe, _failure)


def _describe(result: RuntimeSimResult) -> str:
    stats = result.stats
    return (
        f"n={result.n} heights={stats.heights} crashes={stats.crashes} "
        f"syncs={stats.syncs}/{stats.snapshot_syncs} actor_sent={stats.actor_sent} "
        f"liveness_ms={stats.liveness_ms} digest={result.digest[:16]} "
        f"({result.wall_s:.2f}s, {result.virtual_s:.1f}s virtual)"
    )


def _failure(result: RuntimeSimResult) -> str:
    text = str(result.failure)
    if result.traceback:
        text += "\n  " + result.traceback.rstrip().replace("\n", "\n  ")
    return text
