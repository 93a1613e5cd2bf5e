"""A committee of real `seqnet node run` processes behind fault-injecting proxies, a
bounded load generator that records a history, and the timeline of one chaos run.

Layout of a run folder (kept with `--keep`):

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
Every loop is bounded by count and time; every process started is killed in `close`.
"""

from __future__ import annotations

import contextlib
import json
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
from node.intents import address_of_private_key, intent_to_json, place_action, sign_intent
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


@dataclass
class Answer:
    """One intent of the history."""

    id: str  # hex EIP-712 digest
    node: int
    sent_s: float
    answer_s: float
    status: str  # committed | rejected | accepted | timeout | error:…
    height: int | None  # the committed height the node answered, if any
    probe: bool = False

    @property
    def acknowledged(self) -> bool:
        """The node said it is in the committed log (an engine rejection is committed too)."""
        return self.height is not None and self.status in ("committed", "rejected")


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

    async def submit_one(
        self, client: httpx.AsyncClient, worker: int, node: int, probe: bool = False
    ) -> Answer:
        key = (0x5EC0_0000 + worker).to_bytes(32, "big")
        nonce = max(self._nonces.get(worker, 0) + 1, time.time_ns() // 1_000_000)
        self._nonces[worker] = nonce
        intent = sign_intent(key, address_of_private_key(key), nonce, _PLACE, self.domain)
        answer = Answer(intent.digest(self.domain).hex(), node, self.now_s(), 0.0, "", None, probe)
        url = f"{self.members[node].api}/v1/intents?wait=committed&timeout_ms={SUBMIT_TIMEOUT_MS}"
        try:
            r = await client.post(
                url,
                json={"intents": [intent_to_json(intent)]},
                timeout=SUBMIT_TIMEOUT_MS / 1000 + 2,
            )
            if r.status_code == 200:
                result = r.json()["results"][0]
                answer.status = str(result["status"])
                height = result.get("height")
                answer.height = int(height) if height is not None else None
            else:
                answer.status = f"error:http {r.status_code}"
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            answer.status = f"error:{type(exc).__name__}"
        answer.answer_s = self.now_s()
        self.history.append(answer)
        return answer

    async def load(self, deadline_s: float) -> None:
        """LOAD_WORKERS workers, each one intent at a time to a random member, until the
        deadline (run time in seconds) or MAX_INTENTS_PER_WORKER each."""

        async def worker(w: int) -> None:
            rng = random.Random(self.seed * 1000 + w)
            async with httpx.AsyncClient() as client:
                for _ in range(MAX_INTENTS_PER_WORKER):
                    if self.now_s() >= deadline_s:
                        return
                    await self.submit_one(client, w, rng.randrange(self.n))
                    await trio.sleep(LOAD_PAUSE_S)

        async with trio.open_nursery() as nursery:
            for w in range(LOAD_WORKERS):
                nursery.start_soon(worker, w)

    async def probe_recovery(self, since_s: float) -> float | None:
        """Seconds from `since_s` until an intent sent to a healthy member commits."""
        healthy = [i for i in range(self.n) if i not in self.faulty] or list(range(self.n))
        async with httpx.AsyncClient() as client:
            deadline = since_s + RECOVERY_TIMEOUT_S
            while self.now_s() < deadline:
                node = self.rng.choice(healthy)
                answer = await self.submit_one(client, LOAD_WORKERS, node, probe=True)
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
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.load, end_at)
        async with httpx.AsyncClient() as client:
            await trio.sleep(max(0.0, inject_at - cluster.now_s()))
            fault_start = cluster.now_s()
            await inject(cluster, client)
            await trio.sleep(max(0.0, heal_at - cluster.now_s()))
            fault_end = cluster.now_s()
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
    result.heights = await cluster.converge(CONVERGE_TIMEOUT_S)
    for m in cluster.members:
        if m.pid is not None and not cluster.alive(m.index):
            result.violations.append(f"{m.name} died: {last_error_line(m.log)}")


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
