"""Child processes of the local tools (localnet, local chain, fault harness): start a
node, tell whether a PID is alive, stop one politely then firmly. One copy for all."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

STOP_TIMEOUT_S = 10.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0): reap it if it is ours
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def stop_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if it has not exited within the timeout; wait for it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while pid_alive(pid) and time.monotonic() < deadline + timeout_s:
        time.sleep(0.05)


def start_node(
    config: Path,
    log: Path,
    extra_env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> int:
    """Start `seqnet node run --config CONFIG` in its own session, appending its output to
    LOG; return its PID. `preexec_fn` runs in the child before exec (resource limits)."""
    env = dict(os.environ, ETH_HASH_BACKEND="pysha3", **(extra_env or {}))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "node", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            preexec_fn=preexec_fn,  # the child is single-threaded until exec
        )
    return proc.pid


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections (Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port(nodes: int, host: str = "127.0.0.1") -> int:
    """A base P with P+i, P+1000+i and P+2000+i free for every node (the ports
    `committee init` assigns), all below the kernel's ephemeral range: a port from that
    range can be taken by any outgoing connection while a killed node is down, and the
    restarted node would then fail to bind it."""
    high = _ephemeral_low() - 2000 - nodes
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, max(10_001, high))
        ports = [base + off + i for off in (0, 1000, 2000) for i in range(nodes)]
        if all(port_free(p, host) for p in ports):
            return base
    raise RuntimeError(f"no free port range on {host}")
