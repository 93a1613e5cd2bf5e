"""SIGTERM at any moment of a member's life (a real `seqnet node run` process, the only
member of its committee) ends it within EXIT_BOUND_S with exit status 0 and "stopped"
logged, storage closed (node/node_cli.py): right after spawn, as soon as it catches the
signal (the imports), 0.3 s and 1 s in, once it is ready, twice in a row, and during
the engine restore of a member with a longer log, which the stop interrupts. SIGINT
likewise. Each stopped member starts again from what it stored.

"Right after spawn" needs the launcher's help: until the interpreter reaches node_cli
(~40 ms), SIGTERM's default action applies (status -15), unless the launcher blocks the
signal across `exec` (node_cli unblocks it once its handler is in place). That case
spawns so; the others spawn as node/procs.py `start_node` does.

A stop during the imports (~1.7 s) is taken when they end, at the first safe point; the
times are printed. EXIT_BOUND_S is a liveness bound, not a performance figure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.config import FRESH_DATA_MARK, load_node_config
from node.genesis import committee_init, load_genesis
from node.intents import intent_to_json
from node.procs import free_base_port
from tests.node.cluster import place, trader_key, wait_for

pytestmark = pytest.mark.integration

EXIT_BOUND_S = 10.0
START_BOUND_S = 60.0
LONG_LOG_INTENTS = 20_000  # committed before the restore case: a replay that takes a while
BATCH = 500


class Member:
    """One single-member committee in a folder, and the processes run from it."""

    def __init__(self, folder: Path) -> None:
        committee_init(folder, 1, base_port=free_base_port(1))
        self.folder = folder
        self.config = folder / "node0" / "config.toml"
        self.log = folder / "node0" / "node.log"
        listen = load_node_config(self.config).api_listen
        self.api = f"http://{listen.host}:{listen.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._first_line = 0  # of the running process's output in the log

    def spawn(self, *, block_stop_signals: bool = False) -> subprocess.Popen[bytes]:
        """`seqnet node run` as node/procs.py `start_node` runs it; with
        `block_stop_signals`, SIGTERM and SIGINT blocked across exec."""

        def block() -> None:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

        self._first_line = len(self._lines())
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "node", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=dict(os.environ, ETH_HASH_BACKEND="pysha3"),
                preexec_fn=block if block_stop_signals else None,
            )
        return self.proc

    def sigterm(self, signum: int = signal.SIGTERM) -> tuple[float, int]:
        """SIGTERM (or `signum`) the process; seconds until it exited, and its status."""
        proc = self.proc
        assert proc is not None
        started = time.monotonic()
        proc.send_signal(signum)
        try:
            code = proc.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"still running {EXIT_BOUND_S} s after {signum}") from None
        return time.monotonic() - started, code

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.api}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{self.api}/v1/status", timeout=2.0).json()
        return found

    def _lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines the last process spawned logged (hypercorn and web3 may add
        plain ones)."""
        out = []
        for line in self._lines()[self._first_line :]:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Member]:
    m = Member(tmp_path / "net")
    try:
        yield m
    finally:
        m.kill()


def catches_sigterm(pid: int) -> bool:
    """/proc says the process has a handler for SIGTERM (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def assert_clean_stop(member: Member, took_s: float, code: int, moment: str) -> str:
    """Exit status 0 within the bound, one "stopping" line, "stopped" last; returns where
    the stop was taken (node_cli's `at`: a start-up safe point or "during the engine
    restore"; "run" once trio's receiver listened)."""
    events = member.events()
    stopping = [e for e in events if e.get("event") == "stopping"]
    phase = str(stopping[-1].get("at", "run")) if stopping else "no log line"
    print(f"{moment}: exit after {took_s:.3f} s, status {code}, taken: {phase}")
    assert code == 0, f"exit status {code}"
    assert took_s < EXIT_BOUND_S
    assert len(stopping) == 1, stopping
    assert events[-1].get("event") == "stopped", events[-3:]
    return phase


def probe_during_restore(member: Member, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Once "storage opened" is logged, /healthz and /readyz until a /readyz answer
    names the restore (or the restore ended first): the last answers seen."""
    deadline = time.monotonic() + START_BOUND_S
    while not any(e.get("event") == "storage opened" for e in member.events()):
        assert proc.poll() is None and time.monotonic() < deadline, "no storage opened"
        time.sleep(0.002)
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen["healthz"] = httpx.get(f"{member.api}/healthz", timeout=2.0).status_code
        r = httpx.get(f"{member.api}/readyz", timeout=2.0)
        seen["readyz"] = r.status_code
        seen.update({k: v for k, v in r.json().items() if k != "error"})
        if seen.get("phase") == "restoring" or any(
            e.get("event") == "engine restored" for e in member.events()
        ):
            break
    return seen


def start_and_wait_ready(member: Member) -> None:
    member.spawn()
    wait_for(member.ready, START_BOUND_S, "the member is ready")


@pytest.mark.parametrize("moment", ["right after spawn", "handler installed", 0.3, 1.0, "ready"])
def test_sigterm_at_any_moment_of_start_up_exits_0(member: Member, moment: str | float) -> None:
    if moment == "right after spawn":
        proc = member.spawn(block_stop_signals=True)
    else:
        proc = member.spawn()
    if moment == "handler installed":
        if not Path(f"/proc/{proc.pid}/status").exists():
            pytest.skip("needs /proc")
        wait_for(lambda: catches_sigterm(proc.pid), 5.0, "node_cli catches SIGTERM")
    elif isinstance(moment, float):
        time.sleep(moment)
    elif moment == "ready":
        wait_for(member.ready, START_BOUND_S, "the member is ready")
    took_s, code = member.sigterm()
    phase = assert_clean_stop(member, took_s, code, f"SIGTERM {moment}")
    if moment == "ready":
        assert phase == "run"
        # A member ran from this data directory: its next start may not skip the guard.
        assert not (member.folder / "node0" / "data" / FRESH_DATA_MARK).exists()
    # It starts again from what it stored (or from nothing, stopped before storage).
    start_and_wait_ready(member)
    took_s, code = member.sigterm()
    assert_clean_stop(member, took_s, code, f"SIGTERM after the restart ({moment})")


def test_a_second_sigterm_during_start_up_changes_nothing(member: Member) -> None:
    member.spawn()
    time.sleep(0.3)
    assert member.proc is not None
    member.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    took_s, code = member.sigterm()
    assert_clean_stop(member, took_s, code, "SIGTERM twice, 0.3 s in")


def test_sigint_stops_it_the_same_way(member: Member) -> None:
    member.spawn()
    time.sleep(0.3)
    took_s, code = member.sigterm(signal.SIGINT)
    assert_clean_stop(member, took_s, code, "SIGINT 0.3 s in")
    start_and_wait_ready(member)
    took_s, code = member.sigterm(signal.SIGINT)
    assert_clean_stop(member, took_s, code, "SIGINT once ready")
    assert [e["signal"] for e in member.events() if e.get("event") == "stopping"] == ["SIGINT"]


def test_sigterm_during_the_engine_restore_of_a_longer_log(member: Member) -> None:
    """Commit LONG_LOG_INTENTS intents, restart, SIGTERM as soon as storage is open (the
    restore runs then): the restore is interrupted, exit 0; the member starts again at
    the same height."""
    start_and_wait_ready(member)
    domain = load_genesis(member.folder / "genesis.toml").domain()
    started = time.monotonic()
    for start in range(0, LONG_LOG_INTENTS, BATCH):
        body = {
            "intents": [
                intent_to_json(place(trader_key(k % 40), domain))
                for k in range(start, start + BATCH)
            ]
        }
        response = httpx.post(
            f"{member.api}/v1/intents?wait=committed&timeout_ms=20000", json=body, timeout=30
        )
        assert response.status_code == 200, response.text
        assert all(r["height"] is not None for r in response.json()["results"])
    height = int(member.status()["committed_height"])
    print(
        f"{LONG_LOG_INTENTS} intents committed in {time.monotonic() - started:.1f} s, "
        f"height {height}"
    )
    took_s, code = member.sigterm()
    assert_clean_stop(member, took_s, code, "SIGTERM with the longer log, ready")

    # Restart, and SIGTERM as soon as "storage opened" is logged: the restore runs then,
    # and the stop interrupts it (it only reads) instead of waiting for its end.
    proc = member.spawn()
    deadline = time.monotonic() + START_BOUND_S
    while not any(e.get("event") == "storage opened" for e in member.events()):
        assert proc.poll() is None and time.monotonic() < deadline, "no storage opened"
        time.sleep(0.005)
    took_s, code = member.sigterm()
    phase = assert_clean_stop(member, took_s, code, "SIGTERM once storage is open")
    assert phase == "during the engine restore", phase
    assert not any(e.get("event") == "engine restored" for e in member.events())

    # The undisturbed restart: the API port answers during the restore (the start-up
    # probe, node/api/probe.py), the restore's length, and the same height as before.
    proc = member.spawn()
    seen = probe_during_restore(member, proc)
    print(f"during the restore: {seen}")
    assert seen["healthz"] == 200
    assert seen["readyz"] == 503 and seen["phase"] == "restoring", seen
    assert seen["target_height"] >= height
    wait_for(member.ready, START_BOUND_S, "the member is ready")
    events = member.events()
    opened = next(e for e in events if e.get("event") == "storage opened")
    restored = next(e for e in events if e.get("event") == "engine restored")
    restore_s = (
        datetime.fromisoformat(restored["timestamp"]) - datetime.fromisoformat(opened["timestamp"])
    ).total_seconds()
    print(
        f"restore: {restore_s:.3f} s, replayed {restored['replayed']} blocks to height "
        f"{restored['height']}, from a snapshot: {restored['from_snapshot']}"
    )
    assert int(restored["height"]) >= height
    took_s, code = member.sigterm()
    assert_clean_stop(member, took_s, code, "SIGTERM after the restarts")
