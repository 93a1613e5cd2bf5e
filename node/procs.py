"""Child processes of the local tools (localnet, local chain, fault harness): start a
node, tell whether a PID is alive, stop one politely then firmly. One copy for all."""

from __future__ import annotations

import os
import signal
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
