"""The runtime simulator's checker: what must hold for the honest members of one run.

- **No honest runtime raises**: an exception escaping `Node.run`, `Node(...)` or
  `Node.submit`, and an error the runtime logs while containing a peer's message (the
  dispatcher logs "peer message raised" with the traceback when a peer reached a bug of
  ours), are failures with the traceback.
- **Safety**: every committed record an honest member writes (a commit, a synced block,
  an installed snapshot's record) is compared by block id with what any honest member
  committed at that height, so honest logs are prefixes of one another; the engines'
  checkpoints (state root, withdrawals root) agree per sequence.
- **Liveness** (`liveness_met`): after the heal, every honest member commits blocks
  above the highest height any of them had at the heal, within a bound.
- **Memory**: the runtime's caches and queues, sampled during the run, stay within
  their budgets (`measure`): the runtime's own byte and entry limits where it has them,
  fixed bounds (`UNLIMITED_BUDGETS`) where it has none.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

import node.runtime.member as runtime_module
from node.net.inbound import InboundQueue
from node.net.transport import TransportConfig
from node.payload import decode_committed
from node.runtime import Node
from node.runtime.logger import log as runtime_log


class Violation(Exception):
    """A failed check: the run's verdict."""


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str  # RAISED, CONTAINED, SAFETY, DIVERGED, LIVENESS, MEMORY, HALTED
    member: int | None
    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        who = "" if self.member is None else f" member {self.member}"
        return f"{self.kind}{who}: {self.message}"


# Budgets for what a member holds in memory, (value, limit) per name. Bytes where the
# runtime budgets bytes, entries where it counts entries. Where the runtime has a limit
# the budget is that limit (a breach means it is not enforced); where it has none, a
# bound a short run must never approach (growth past it is a leak).
UNLIMITED_BUDGETS: dict[str, int] = {
    "blocks_in_tree": 2_000,  # the core's uncommitted block tree
}


def measure(node: Node, inbound: InboundQueue | None) -> dict[str, tuple[int, int]]:
    """A member's caches and queues: name -> (current size, budget)."""
    core = node.core
    sizes = dict(node.memory())
    sizes["orphans"] = (len(core._orphans), core._config.max_orphans)
    sizes["blocks_in_tree"] = (
        core.status().blocks_in_tree,
        UNLIMITED_BUDGETS["blocks_in_tree"],
    )
    if inbound is not None:
        config = TransportConfig()
        sizes["net_inbound_bytes"] = (inbound.buffered_bytes(), config.inbound_bytes)
    return sizes


@dataclass(slots=True)
class CheckerStats:
    commits: int = 0
    max_height: int = 0
    warnings: dict[str, int] = field(default_factory=dict)  # runtime warnings by event
    memory_max: dict[str, int] = field(default_factory=dict)
    memory_budget: dict[str, int] = field(default_factory=dict)
    honest_penalties: int = 0  # an honest member penalized an honest peer
    honest_penalty_reasons: dict[str, int] = field(default_factory=dict)


class Checker:
    def __init__(self, honest: frozenset[int], trace: Any) -> None:
        self.honest = honest
        self.failures: list[Failure] = []
        self.stats = CheckerStats()
        self.failed = trio.Event()
        self._trace = trace
        self._canon: dict[int, tuple[bytes, int]] = {}  # height -> (block id, member)
        self._checkpoints: dict[int, tuple[bytes, bytes, int]] = {}  # sequence -> roots, who

    def fail(self, failure: Failure) -> None:
        self.failures.append(failure)
        self.failed.set()

    # ------------------------------------------------------------ no raise

    def raised(self, member: int, where: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        leaf = _leaf(exc)
        summary = f"{where}: {type(leaf).__name__}: {leaf}"[:500]
        self.fail(Failure("RAISED", member, summary, text))

    def on_log(self, member: int | None, level: str, event: MutableMapping[str, Any]) -> None:
        """A runtime log line at warning or above (see `capture_logs`)."""
        name = str(event.get("event", ""))
        if level == "warning":
            self.stats.warnings[name] = self.stats.warnings.get(name, 0) + 1
            return
        if member is None or member not in self.honest:
            return
        exc_info = event.get("exc_info")
        text = None
        if isinstance(exc_info, BaseException):
            text = "".join(traceback.format_exception(exc_info))
        detail = {k: v for k, v in event.items() if k not in ("event", "exc_info", "sim_member")}
        kind = "HALTED" if name == "node halted" else "CONTAINED"
        self.fail(Failure(kind, member, f"logged {level} {name!r} {detail}"[:500], text))

    def on_penalty(self, by: int, peer: int, reason: str) -> None:
        """Every penalty an honest member gives names the exception its boundary raised
        (`Node._peer_fault`). One outside the runtime's expected peer errors is a bug of
        ours that a peer reached, even when the runtime's log gate kept it out of the
        log. An honest member accusing an honest peer is counted and reported."""
        if by not in self.honest:
            return
        name = reason.split(":", 1)[0]
        if name not in _expected_error_names() and not reason.startswith("protocol violation"):
            self.fail(Failure("CONTAINED", by, f"penalized peer {peer} for {reason[:300]}"))
        if peer in self.honest:
            self.stats.honest_penalties += 1
            key = reason[:60]
            reasons = self.stats.honest_penalty_reasons
            reasons[key] = reasons.get(key, 0) + 1

    # ------------------------------------------------------------ safety

    def on_commit(self, member: int, height: int, record: bytes) -> None:
        if member not in self.honest:
            return
        block = decode_committed(record)
        if block.height != height:
            self.fail(
                Failure("SAFETY", member, f"record of height {block.height} stored at {height}")
            )
            return
        self.stats.commits += 1
        self.stats.max_height = max(self.stats.max_height, height)
        self._trace.update(b"commit %d %d " % (member, height) + block.id)
        first = self._canon.setdefault(height, (block.id, member))
        if first[0] != block.id:
            self.fail(
                Failure(
                    "SAFETY",
                    member,
                    f"committed block {block.id.hex()[:16]} at height {height}, "
                    f"member {first[1]} committed {first[0].hex()[:16]}",
                )
            )

    def check_checkpoints(self, member: int, node: Node) -> None:
        for cp in node.engine.withdrawal_trees.checkpoints():
            mine = (cp.state_root, cp.withdrawals_root, member)
            first = self._checkpoints.setdefault(cp.sequence, mine)
            if first[:2] != mine[:2]:
                self.fail(
                    Failure(
                        "DIVERGED",
                        member,
                        f"checkpoint {cp.sequence}: state root {cp.state_root.hex()[:16]}, "
                        f"member {first[2]} has {first[0].hex()[:16]}",
                    )
                )

    @property
    def checkpoints_compared(self) -> int:
        return len(self._checkpoints)

    # ------------------------------------------------------------ memory

    def sample_memory(self, member: int, node: Node, inbound: InboundQueue | None) -> None:
        top = self.stats.memory_max
        for name, (value, limit) in measure(node, inbound).items():
            if value > top.get(name, -1):
                top[name] = value
                self.stats.memory_budget[name] = limit
                if value > limit:
                    self.fail(Failure("MEMORY", member, f"{name} = {value} > budget {limit}"))


@functools.cache
def _expected_error_names() -> frozenset[str]:
    """Names of the exceptions the runtime's boundary expects from a peer's bad input
    (node/runtime.py `_PEER_ERRORS`), subclasses included."""
    names: set[str] = set()
    todo: list[type] = list(runtime_module._PEER_ERRORS)
    while todo:
        cls = todo.pop()
        if cls.__name__ not in names:
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
    return frozenset(names)


def _leaf(exc: BaseException) -> BaseException:
    """The exception inside nurseries' groups of one, for a one-line summary."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# ---------------------------------------------------------------- log capture

SIM_MEMBER_KEY = "sim_member"


@contextmanager
def capture_logs(
    sink: Callable[[int | None, str, MutableMapping[str, Any]], None],
) -> Iterator[None]:
    """Route the runtime's structlog output (warnings and above) to `sink` for the
    duration, with the member bound by `bind_member`; restore the old config after."""
    old = structlog.get_config()

    def collect(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        member = event.get(SIM_MEMBER_KEY)
        level = "error" if method in ("error", "critical", "exception") else method
        sink(member if isinstance(member, int) else None, level, event)
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, collect],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=False,
    )
    # A logger cached under an earlier configuration (node/log.py caches on first use)
    # would bypass this one: drop the runtime's cached binding for the duration.
    proxy_state = vars(runtime_log) if hasattr(runtime_log, "__dict__") else {}
    cached_bind = proxy_state.pop("bind", None)
    try:
        yield
    finally:
        if cached_bind is not None:
            proxy_state["bind"] = cached_bind
        structlog.configure(**old)


def bind_member(member: int) -> None:
    """Tag the current task (and the tasks it spawns later) with its member index."""
    structlog.contextvars.bind_contextvars(**{SIM_MEMBER_KEY: member})
