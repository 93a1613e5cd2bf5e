"""A committee of real `seqnet node run` processes behind fault-injecting proxies, a
bounded load generator that records a history, and the timeline of one chaos run.

Layout of a run folder (kept with `--dir`):

    genesis.toml            the committee (`committee init`)
    nodeI/config.toml       peer_addresses: member j -> the proxy listener for (I, j)
    nodeI/data/             the node's SQLite data directory (read by the checker)
    nodeI/node.log          JSON log lines (scanned for misbehaviour reports)
    history.jsonl           one line per intent: id, node, answer, times

Every connection between members passes through the proxy: member i dials j at the
pair listener (i, j), which forwards to j's genesis consensus address.

Timeline (`Cluster.run_scenario`): start and wait for a first commit; load for the whole
duration; at 20% the scenario injects its faults, at 60% it heals; a probe measures the
seconds until an intent commits again; when the load stops, every member must reach the
highest acknowledged height; the nodes are stopped and the checker reads their logs.
Besides its verdict, a run reports figures (`RunResult.figures`): committed intents per
second and light-load latency (p50/p99) of the healthy phase and of the fault, and what a
scenario measures itself (a capacity burst, restart times). A fault that takes time to
settle (a dead member leaving the leader candidates) is measured from when the scenario
says it settled (`fault_measured_from`); the heal and the end of the load move so that
phase lasts as long as the healthy one.

Every loop is bounded by count and time; every process started is killed in `close`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import random
import resource
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from node.chaos.proxy import ProxyNet, serve_listener
from node.config import HostPort, load_node_config
from node.genesis import Genesis, committee_init
from node.intents import (
    SignedIntent,
    address_of_private_key,
    intent_to_json,
    place_action,
    sign_intent,
)
from node.procs import free_base_port, pid_alive, start_node

HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 90.0
RECOVERY_TIMEOUT_S: Final = 30.0
CONVERGE_TIMEOUT_S: Final = 40.0
SUBMIT_TIMEOUT_MS: Final = 4000
LOAD_WORKERS: Final = 3
LOAD_PAUSE_S: Final = 0.05
MAX_INTENTS_PER_WORKER: Final = 5000
STOP_TIMEOUT_S: Final = 10.0
READY_TIMEOUT_S: Final = 60.0
MAX_BATCH_INTENTS: Final = 500  # per POST (the API takes up to 1,000)
BURST_SENDERS: Final = 8
BURST_BATCHES: Final = 8  # per sender
BURST_BATCH_INTENTS: Final = 50
BURST_TIMEOUT_MS: Final = 15_000
# libfaketime as Debian's `faketime` package installs it (any architecture).
FAKETIME_GLOBS: Final = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


@dataclass
class Answer:
    """One intent of the history."""

    id: str  # hex EIP-712 digest
    node: int
    sent_s: float
    answer_s: float
    status: str  # committed | rejected | accepted | timeout | error:…
    height: int | None  # the committed height the node answered, if any
    kind: str = "load"  # load (light, one at a time) | probe | burst (capacity) | resubmit
    code: str | None = None  # the rejection code, if any

    @property
    def acknowledged(self) -> bool:
        """The node said it is in the committed log (an engine rejection is committed too)."""
        return self.height is not None and self.status in ("committed", "rejected")

    @property
    def probe(self) -> bool:
        return self.kind == "probe"

    @property
    def latency_ms(self) -> float:
        return (self.answer_s - self.sent_s) * 1000


@dataclass
class Member:
    index: int
    name: str
    config: Path
    data_dir: Path
    log: Path
    api: str
    pid: int | None = None
    frozen: bool = False


@dataclass
class RunResult:
    scenario: str
    seed: int
    duration_s: float
    faults: list[str] = field(default_factory=list)
    intents_submitted: int = 0
    intents_acknowledged: int = 0
    intents_lost: int = 0
    acknowledged_during_fault: int = 0
    recovery_s: float | None = None
    heights: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # measured, never a verdict
    skipped: str | None = None
    folder: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Cluster:
    """The committee, its proxies and its history. Use inside one trio nursery."""

    def __init__(self, folder: Path, nodes: int, seed: int) -> None:
        assert nodes >= 1
        self.folder = folder
        self.seed = seed
        self.rng = random.Random(seed)
        self.net = ProxyNet(nodes, seed)
        self.history: list[Answer] = []
        self.faults: list[str] = []
        self.notes: list[str] = []
        self.faulty: set[int] = set()  # members that may legitimately lag or stop
        self.byzantine: set[int] = set()  # members that misbehave on purpose (not honest)
        self.violations: list[str] = []  # what a scenario's own checks found
        self.figures: dict[str, Any] = {}  # what a scenario measured (RunResult.figures)
        self.fault_measured_from: float | None = None  # run time the fault phase settled
        self.load_until_s = 0.0  # run time the load stops
        self.signed: dict[str, SignedIntent] = {}  # every intent sent, by id (resubmission)
        self.t0 = time.monotonic()
        self._pids: set[int] = set()
        self._nonces: dict[int, int] = {}
        base = free_base_port(nodes)
        self.genesis: Genesis = committee_init(folder, nodes, base_port=base)
        self.domain = self.genesis.domain()
        self.members: list[Member] = []
        self._pair_listeners: dict[tuple[int, int], trio.SocketListener] = {}

    @property
    def n(self) -> int:
        return len(self.members) or len(self.genesis.members)

    def now_s(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def record_fault(self, what: str) -> None:
        self.faults.append(f"t={self.now_s():.1f}s {what}")

    # ------------------------------------------------------------ set-up

    async def start(self, nursery: trio.Nursery) -> None:
        """Open the proxy listeners, write the configs, start every member."""
        n = len(self.genesis.members)
        for j, member in enumerate(self.genesis.members):
            target = (member.host, member.consensus_port)
            for i in range(n):
                if i != j:
                    pair = (await trio.open_tcp_listeners(0, host=HOST))[0]
                    self._pair_listeners[(i, j)] = pair
                    nursery.start_soon(serve_listener, self.net, pair, j, target, i)
        for i, member in enumerate(self.genesis.members):
            node_dir = self.folder / member.name
            path = node_dir / "config.toml"
            config = load_node_config(path)
            peers = {
                other.name: HostPort(HOST, self._pair_listeners[(i, j)].socket.getsockname()[1])
                for j, other in enumerate(self.genesis.members)
                if j != i
            }
            config = replace(config, peer_addresses=peers)
            config.write(path)
            self.members.append(
                Member(
                    i,
                    member.name,
                    path,
                    config.data_dir,
                    node_dir / "node.log",
                    f"http://{HOST}:{member.api_port}",
                )
            )
        for m in self.members:
            self.start_member(m.index)
        await self.wait_all_committed(1, START_TIMEOUT_S)

    def start_member(
        self, i: int, fsize_limit_bytes: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        m = self.members[i]
        assert m.pid is None or not pid_alive(m.pid), f"{m.name} is running"
        if fsize_limit_bytes is None:
            m.pid = start_node(m.config, m.log, env)
        else:
            m.pid = _start_limited(m.config, m.log, fsize_limit_bytes)
        m.frozen = False
        self._pids.add(m.pid)

    def signal_member(self, i: int, signum: signal.Signals) -> None:
        m = self.members[i]
        if m.pid is None:
            return
        try:
            os.kill(m.pid, signum)
        except ProcessLookupError:
            return
        if signum == signal.SIGSTOP:
            m.frozen = True
        elif signum == signal.SIGCONT:
            m.frozen = False

    async def kill_member(self, i: int) -> None:
        m = self.members[i]
        self.signal_member(i, signal.SIGKILL)
        if m.pid is not None:
            pid = m.pid
            await _wait_dead(pid, STOP_TIMEOUT_S)
        m.pid = None

    async def stop_member(self, i: int) -> float | None:
        """SIGTERM member i; the seconds until it exited (SIGKILL and None past
        STOP_TIMEOUT_S)."""
        m = self.members[i]
        if m.pid is None:
            return None
        pid, started = m.pid, time.monotonic()
        self.signal_member(i, signal.SIGTERM)
        stopped = await _wait_dead(pid, STOP_TIMEOUT_S)
        if not stopped:
            await self.kill_member(i)
        m.pid = None
        return time.monotonic() - started if stopped else None

    async def wait_status(
        self,
        client: httpx.AsyncClient,
        i: int,
        predicate: Callable[[dict[str, Any]], bool],
        timeout_s: float,
    ) -> dict[str, Any] | None:
        """Member i's status once `predicate` holds for it; None after `timeout_s`."""
        with trio.move_on_after(timeout_s):
            while True:
                s = await self.status(client, i)
                if s is not None and predicate(s):
                    return s
                await trio.sleep(0.1)
        return None

    def alive(self, i: int) -> bool:
        pid = self.members[i].pid
        return pid is not None and pid_alive(pid)

    async def close(self) -> None:
        """Stop every process this cluster started: SIGCONT, SIGTERM, then SIGKILL."""
        for pid in self._pids:
            for signum in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
        with trio.CancelScope(shield=True):
            for pid in self._pids:
                if not await _wait_dead(pid, STOP_TIMEOUT_S):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    await _wait_dead(pid, STOP_TIMEOUT_S)
        for m in self.members:
            m.pid = None

    # ------------------------------------------------------------ HTTP

    async def status(self, client: httpx.AsyncClient, i: int) -> dict[str, Any] | None:
        if self.members[i].frozen or not self.alive(i):
            return None
        try:
            r = await client.get(f"{self.members[i].api}/v1/status", timeout=1.0)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        except (httpx.HTTPError, ValueError):
            pass
        return None

    async def heights(self, client: httpx.AsyncClient) -> list[int]:
        out = []
        for i in range(self.n):
            s = await self.status(client, i)
            out.append(-1 if s is None else int(s["committed_height"]))
        return out

    async def leader(self, client: httpx.AsyncClient) -> int:
        """The leader of the current round, as the live members report it (majority)."""
        votes: dict[int, int] = {}
        for i in range(self.n):
            s = await self.status(client, i)
            if s is not None:
                votes[int(s["leader"])] = votes.get(int(s["leader"]), 0) + 1
        if not votes:
            return 0
        return max(votes, key=lambda k: votes[k])

    async def wait_all_committed(self, min_height: int, timeout_s: float) -> None:
        async with httpx.AsyncClient() as client:
            with trio.move_on_after(timeout_s):
                while True:
                    for m in self.members:
                        if m.pid is not None and not pid_alive(m.pid):
                            tail = m.log.read_text(errors="replace")[-1500:]
                            raise RuntimeError(f"{m.name} exited at start-up:\n{tail}")
                    if min(await self.heights(client)) >= min_height:
                        return
                    await trio.sleep(0.2)
        raise RuntimeError(f"committee did not commit height {min_height} in {timeout_s} s")

    def sign(self, key_index: int, count: int) -> list[SignedIntent]:
        """`count` signed orders of one load key, nonces rising (milliseconds from now).
        Remembered by id, for resubmission."""
        key = (0x5EC0_0000 + key_index).to_bytes(32, "big")
        account = address_of_private_key(key)
        out = []
        for _ in range(count):
            nonce = max(self._nonces.get(key_index, 0) + 1, time.time_ns() // 1_000_000)
            self._nonces[key_index] = nonce
            intent = sign_intent(key, account, nonce, _PLACE, self.domain)
            self.signed[intent.digest(self.domain).hex()] = intent
            out.append(intent)
        return out

    async def submit(
        self,
        client: httpx.AsyncClient,
        node: int,
        intents: list[SignedIntent],
        kind: str = "load",
        wait_ms: int | None = SUBMIT_TIMEOUT_MS,
        record: bool = True,
    ) -> list[Answer]:
        """POST a batch to `node` (waiting for the commit unless `wait_ms` is None); one
        Answer per intent, in order, added to the history when `record`."""
        assert 0 < len(intents) <= MAX_BATCH_INTENTS
        sent = self.now_s()
        answers = [
            Answer(si.digest(self.domain).hex(), node, sent, 0.0, "", None, kind) for si in intents
        ]
        query = "" if wait_ms is None else f"?wait=committed&timeout_ms={wait_ms}"
        try:
            r = await client.post(
                f"{self.members[node].api}/v1/intents{query}",
                json={"intents": [intent_to_json(si) for si in intents]},
                timeout=(wait_ms or 0) / 1000 + 5,
            )
            if r.status_code == 200:
                results = r.json()["results"]
                assert len(results) == len(answers), (len(results), len(answers))
                for answer, result in zip(answers, results, strict=True):
                    answer.status = str(result["status"])
                    height = result.get("height")
                    answer.height = int(height) if height is not None else None
                    answer.code = result.get("code")
            else:
                for answer in answers:
                    answer.status = f"error:http {r.status_code}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            for answer in answers:
                answer.status = f"error:{type(exc).__name__}"
        done = self.now_s()
        for answer in answers:
            answer.answer_s = done
        if record:
            self.history += answers
        return answers

    async def submit_one(
        self, client: httpx.AsyncClient, worker: int, node: int, kind: str = "load"
    ) -> Answer:
        (answer,) = await self.submit(client, node, self.sign(worker, 1), kind)
        return answer

    def running(self) -> list[int]:
        """Members whose process runs (a paused one counts: clients cannot tell)."""
        return [i for i in range(self.n) if self.alive(i)]

    async def load(self) -> None:
        """LOAD_WORKERS workers, each one intent at a time to a random running member (as
        a client behind a health-checking balancer), until `load_until_s` (run time in
        seconds; the timeline may move it) or MAX_INTENTS_PER_WORKER each."""

        async def worker(w: int) -> None:
            rng = random.Random(self.seed * 1000 + w)
            async with httpx.AsyncClient() as client:
                for _ in range(MAX_INTENTS_PER_WORKER):
                    if self.now_s() >= self.load_until_s:
                        return
                    node = rng.randrange(self.n)
                    if not self.alive(node):
                        node = rng.choice(self.running() or [node])
                    await self.submit_one(client, w, node)
                    await trio.sleep(LOAD_PAUSE_S)

        async with trio.open_nursery() as nursery:
            for w in range(LOAD_WORKERS):
                nursery.start_soon(worker, w)

    async def capacity(self, nodes: list[int]) -> dict[str, float]:
        """Committed intents per second at saturation: BURST_SENDERS senders, each posting
        BURST_BATCHES batches of BURST_BATCH_INTENTS orders (signed beforehand) to `nodes`
        in turn and waiting for their commit. The light load keeps running meanwhile."""
        assert nodes
        batches = [
            await trio.to_thread.run_sync(
                self.sign, BURST_KEY + s, BURST_BATCHES * BURST_BATCH_INTENTS
            )
            for s in range(BURST_SENDERS)
        ]
        acked = 0
        start = self.now_s()

        async def sender(s: int) -> None:
            nonlocal acked
            intents = batches[s]
            async with httpx.AsyncClient() as client:
                for b in range(BURST_BATCHES):
                    node = nodes[(s + b) % len(nodes)]
                    chunk = intents[b * BURST_BATCH_INTENTS : (b + 1) * BURST_BATCH_INTENTS]
                    answers = await self.submit(client, node, chunk, "burst", BURST_TIMEOUT_MS)
                    acked += sum(1 for a in answers if a.acknowledged)

        async with trio.open_nursery() as nursery:
            for s in range(BURST_SENDERS):
                nursery.start_soon(sender, s)
        elapsed = max(self.now_s() - start, 1e-3)
        sent = BURST_SENDERS * BURST_BATCHES * BURST_BATCH_INTENTS
        return {
            "intents": sent,
            "acknowledged": acked,
            "seconds": round(elapsed, 3),
            "committed_per_s": round(acked / elapsed, 1),
        }

    async def resubmit_acknowledged(self, client: httpx.AsyncClient, node: int) -> int:
        """Send every acknowledged intent again to `node` (without waiting): each must get
        its first answer back (same status, height and code), and none may commit twice
        (the checker reads the logs). Mismatches are violations; returns how many were sent."""
        first: dict[str, Answer] = {}
        for a in self.history:
            if a.acknowledged and a.id not in first:
                first[a.id] = a
        ids = list(first)
        mismatches = []
        for start in range(0, len(ids), MAX_BATCH_INTENTS):
            chunk = ids[start : start + MAX_BATCH_INTENTS]
            again = await self.submit(
                client, node, [self.signed[i] for i in chunk], "resubmit", None, record=False
            )
            for answer in again:
                before = first[answer.id]
                seen = (answer.status, answer.height, answer.code)
                if seen != (before.status, before.height, before.code):
                    mismatches.append(
                        f"node{node} answered a resubmitted intent {answer.id[:16]}… with "
                        f"{seen}, first answer (node{before.node}) "
                        f"{(before.status, before.height, before.code)}"
                    )
        if mismatches:
            more = f" (and {len(mismatches) - 5} more)" if len(mismatches) > 5 else ""
            self.violations += mismatches[:5]
            if more:
                self.violations.append(
                    f"{len(mismatches)} resubmitted intents answered differently{more}"
                )
        return len(ids)

    async def restart_timed(self, client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        """Stop member i with SIGTERM and start it again with its data: the seconds it
        took to exit, and from process start to /healthz 200 and to /readyz 200, at the
        height it had (its history length). A member not ready within READY_TIMEOUT_S is a
        violation (with what /readyz said)."""
        m = self.members[i]
        s = await self.status(client, i)
        height = None if s is None else int(s["committed_height"])
        stop_s = await self.stop_member(i)
        self.start_member(i)
        started = time.monotonic()
        healthz_s = readyz_s = None
        said = ""
        with trio.move_on_after(READY_TIMEOUT_S):
            while readyz_s is None:
                if not self.alive(i):
                    break
                try:
                    if healthz_s is None:
                        r = await client.get(f"{m.api}/healthz", timeout=1.0)
                        if r.status_code == 200:
                            healthz_s = time.monotonic() - started
                    if healthz_s is not None:
                        r = await client.get(f"{m.api}/readyz", timeout=1.0)
                        said = r.text[:200]
                        if r.status_code == 200:
                            readyz_s = time.monotonic() - started
                except httpx.HTTPError:
                    pass
                if readyz_s is None:
                    await trio.sleep(0.02)
        if readyz_s is None:
            state = "running" if self.alive(i) else f"exited: {last_error_line(m.log)}"
            self.violations.append(
                f"{m.name} not ready {READY_TIMEOUT_S:.0f} s after a restart ({state}); "
                f"/readyz said {said or 'nothing'}"
            )
        return {
            "member": m.name,
            "height": height,
            "stop_s": None if stop_s is None else round(stop_s, 3),
            "healthz_s": None if healthz_s is None else round(healthz_s, 3),
            "readyz_s": None if readyz_s is None else round(readyz_s, 3),
        }

    async def probe_recovery(self, since_s: float) -> float | None:
        """Seconds from `since_s` until an intent sent to a healthy member commits (within
        RECOVERY_TIMEOUT_S of now: a heal step that measures something may take longer)."""
        healthy = [i for i in range(self.n) if i not in self.faulty] or list(range(self.n))
        async with httpx.AsyncClient() as client:
            deadline = max(since_s, self.now_s()) + RECOVERY_TIMEOUT_S
            while self.now_s() < deadline:
                node = self.rng.choice(healthy)
                answer = await self.submit_one(client, LOAD_WORKERS, node, "probe")
                if answer.acknowledged:
                    return round(answer.answer_s - since_s, 3)
                await trio.sleep(0.1)
        return None

    async def converge(self, timeout_s: float) -> list[int]:
        """Wait until every running member reaches the highest acknowledged height."""
        target = max((a.height or 0 for a in self.history if a.acknowledged), default=1)
        async with httpx.AsyncClient() as client:
            heights = await self.heights(client)
            with trio.move_on_after(timeout_s):
                while True:
                    heights = await self.heights(client)
                    running = [h for i, h in enumerate(heights) if self.alive(i)]
                    if running and min(running) >= target:
                        break
                    await trio.sleep(0.25)
        return heights

    def save_history(self) -> None:
        with (self.folder / "history.jsonl").open("w") as out:
            for answer in self.history:
                out.write(json.dumps(asdict(answer)) + "\n")


_PLACE: Final = place_action(0, "buy", 3_000_000, 10**6)
BURST_KEY: Final = 1_000  # load keys: workers 0.., the probe LOAD_WORKERS, bursts from here


async def _wait_dead(pid: int, timeout_s: float) -> bool:
    with trio.move_on_after(timeout_s):
        while pid_alive(pid):
            await trio.sleep(0.05)
        return True
    return False


def _start_limited(config: Path, log: Path, fsize_limit_bytes: int) -> int:
    """`seqnet node run` with RLIMIT_FSIZE: writes past the limit fail with EFBIG (SIGXFSZ
    ignored), which is what a full disk looks like to SQLite. Output goes to the usual log
    (opened before the limit, append-only; the log may also hit the limit)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit_bytes, fsize_limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return start_node(config, log, preexec_fn=limit)


Step = Callable[[Cluster, httpx.AsyncClient], Awaitable[None]]


async def run_timeline(
    cluster: Cluster,
    result: RunResult,
    inject: Step,
    heal: Step,
    expect_progress: bool,
) -> None:
    """The common timeline of a scenario (see module docstring); fills `result`."""
    duration = result.duration_s
    start = cluster.now_s()
    inject_at, heal_at, end_at = (start + duration * f for f in (0.2, 0.6, 1.0))
    cluster.load_until_s = end_at
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.load)
        async with httpx.AsyncClient() as client:
            height_start = max(await cluster.heights(client))
            await trio.sleep(max(0.0, inject_at - cluster.now_s()))
            fault_start = cluster.now_s()
            height_fault = max(await cluster.heights(client))
            await inject(cluster, client)
            if cluster.fault_measured_from is not None:
                # A fault that takes time to settle gets a measured phase as long as the
                # healthy one; the heal and the end of the load move by as much.
                late = cluster.fault_measured_from + (fault_start - start) - heal_at
                if late > 0:
                    heal_at += late
                    cluster.load_until_s += late
            await trio.sleep(max(0.0, heal_at - cluster.now_s()))
            fault_end = cluster.now_s()
            height_heal = max(await cluster.heights(client))
            await heal(cluster, client)
            cluster.record_fault("healed")
            recovery = await cluster.probe_recovery(fault_end)
    result.recovery_s = recovery
    if recovery is None:
        result.violations.append(f"no commit within {RECOVERY_TIMEOUT_S} s after healing")
    result.acknowledged_during_fault = sum(
        1 for a in cluster.history if a.acknowledged and fault_start <= a.answer_s <= fault_end
    )
    if expect_progress and not result.acknowledged_during_fault:
        result.violations.append(
            "no intent committed during the fault although at most f members were faulty"
        )
    # The fault phase is measured from when the scenario says it settled (the fault
    # injected, a dead leader skipped), else from the injection.
    measured_from = cluster.fault_measured_from or fault_start
    result.figures["light_load"] = {
        "healthy": light_load(cluster.history, start, fault_start),
        "fault": light_load(cluster.history, measured_from, fault_end),
    }
    result.figures["blocks_per_s"] = {
        "healthy": round((height_fault - height_start) / max(fault_start - start, 1e-3), 2),
        "fault": round((height_heal - height_fault) / max(fault_end - fault_start, 1e-3), 2),
    }
    result.figures.update(cluster.figures)
    result.heights = await cluster.converge(CONVERGE_TIMEOUT_S)
    for m in cluster.members:
        if m.pid is not None and not cluster.alive(m.index):
            result.violations.append(f"{m.name} died: {last_error_line(m.log)}")
    result.violations += cluster.violations


def light_load(history: list[Answer], start_s: float, end_s: float) -> dict[str, Any]:
    """The light load's answers sent and answered within [start_s, end_s): intents
    committed per second and their latency (wait=committed round trip)."""
    acked = [
        a
        for a in history
        if a.kind == "load" and a.acknowledged and start_s <= a.sent_s and a.answer_s < end_s
    ]
    latencies = sorted(a.latency_ms for a in acked)
    return {
        "seconds": round(end_s - start_s, 2),
        "acknowledged": len(acked),
        "committed_per_s": round(len(acked) / max(end_s - start_s, 1e-3), 1),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p99": percentile(latencies, 99),
    }


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


def faketime_library() -> str | None:
    """libfaketime's preload library, if installed (Debian: `apt-get install faketime`)."""
    for pattern in FAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


FAKETIME_MISSING: Final = (
    "libfaketime not installed (apt-get install faketime): no process with a wrong clock"
)


def faketime_env(offset: str) -> dict[str, str]:
    """The environment that runs a process with its wall clock `offset` off ("-5s",
    "+3d": libfaketime's relative offsets). Only the wall clock (CLOCK_REALTIME, which
    time.time() reads) is faked: trio's deadlines and timeouts run on CLOCK_MONOTONIC,
    which libfaketime would otherwise shift too, to a reading derived from the faked wall
    clock; a broken NTP moves the wall clock, never the monotonic one. File timestamps
    stay real (NO_FAKE_STAT). FAKETIME_NO_CACHE is not needed: it re-reads a faketime
    file, and the offset here comes from the environment, fixed for the process."""
    library = faketime_library()
    if library is None:
        raise RuntimeError(FAKETIME_MISSING)
    return {
        "LD_PRELOAD": library,
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # libfaketime >= 0.9.9
        "DONT_FAKE_MONOTONIC": "1",  # its name before 0.9.9
        "NO_FAKE_STAT": "1",
    }


def last_error_line(log: Path) -> str:
    """The last line of a node's output that is not an info log line (its traceback's
    last line, or its error message), shortened."""
    lines = [
        ln
        for ln in log.read_text(errors="replace").splitlines()
        if ln.strip() and '"level": "info"' not in ln and '"level":"info"' not in ln
    ]
    return lines[-1].strip()[:300] if lines else "(no output)"


def make_run_folder(base: Path | None, name: str, seed: int) -> Path:
    if base is None:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=f"seqnet-chaos-{name}-{seed}-"))
    folder = base / f"{name}-{seed}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder
