"""`seqnet localnet up` in the foreground (what `./dev run` execs, so a signal sent to
`./dev run` reaches it) takes SIGTERM and SIGHUP as it takes Ctrl-C: it stops its four
members and anvil, then exits 0 (node/localnet.py). A real localnet with anvil and the
contracts, signalled once it runs, and once while anvil is up and the contracts are
being deployed (a stop then is taken when the deployment ends: anvil's PID is known).

"Nothing left" is checked two ways: every PID the localnet recorded (its members in
localnet.json, anvil in chain.json) is gone, and no process on the machine names the
localnet's folder on its command line (the members' `--config`, anvil's `--config-out`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.chain import ANVIL_BIN
from node.localnet import Localnet, down
from node.procs import free_base_port
from tests.node.cluster import wait_for

pytestmark = pytest.mark.integration

START_BOUND_S = 120.0
EXIT_BOUND_S = 40.0  # down: SIGTERM to all, SIGKILL after 10 s; anvil likewise


def running(pid: int) -> bool:
    """The process exists and is not a zombie (the members and anvil are not our
    children: once `up` exits they are reaped by whoever adopts them, or not at all)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_naming(folder: Path) -> list[tuple[int, str]]:
    """Running processes whose command line mentions `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline and running(int(entry.name)):
            found.append((int(entry.name), cmdline))
    return found


class Launch:
    """`seqnet localnet up` in the foreground, its output in a file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.output = folder.parent / "up.out"
        base_port = free_base_port(4)
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "node.cli", "localnet", "up", "--dir", str(folder)),
                    *("--base-port", str(base_port), "--timeout", str(START_BOUND_S)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # as a supervisor starts it: no terminal's signals
                env=dict(os.environ, ETH_HASH_BACKEND="pysha3"),
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def recorded_pids(self) -> dict[str, int]:
        """What the localnet recorded: members from localnet.json, anvil from chain.json."""
        pids: dict[str, int] = {}
        if (self.folder / "localnet.json").exists():
            for node in Localnet.load(self.folder).nodes:
                pids[node.name] = node.pid
        chain = self.folder / "chain.json"
        if chain.exists() and json.loads(chain.read_text())["anvil_pid"] is not None:
            pids["anvil"] = json.loads(chain.read_text())["anvil_pid"]
        return pids

    def wait_for_output(self, needle: str) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None, f"localnet up exited:\n{self.text()[-3000:]}"
            return needle in self.text()

        wait_for(seen, START_BOUND_S, f"{needle!r} in the output of localnet up")

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {EXIT_BOUND_S} s after {signal.Signals(signum).name}:\n"
                + self.text()[-3000:]
            ) from None

    def clean_up(self) -> None:
        """After a failure: leave nothing running either."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if (self.folder / "localnet.json").exists():
            down(Localnet.load(self.folder))
        for pid, _ in processes_naming(self.folder):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    if not ANVIL_BIN.is_file():
        pytest.skip(f"anvil not installed at {ANVIL_BIN} (./dev setup)")
    started = Launch(tmp_path / "net")
    try:
        yield started
    finally:
        started.clean_up()


@pytest.mark.parametrize(
    ("signum", "moment"),
    [
        (signal.SIGTERM, "running"),
        (signal.SIGHUP, "running"),
        (signal.SIGTERM, "deploying"),
    ],
    ids=["SIGTERM-running", "SIGHUP-running", "SIGTERM-deploying"],
)
def test_a_stop_signal_stops_members_and_anvil_and_exits_0(
    launch: Launch, signum: int, moment: str
) -> None:
    if moment == "running":
        launch.wait_for_output("committee running")
        before = launch.recorded_pids()
        assert sorted(before) == ["anvil", "node0", "node1", "node2", "node3"], before
        assert all(running(pid) for pid in before.values()), before
    else:
        wait_for(
            lambda: (launch.folder / "anvil.log").exists() or launch.proc.poll() is not None,
            START_BOUND_S,
            "anvil started",
        )
        assert launch.proc.poll() is None, launch.text()
    started = time.monotonic()
    code = launch.stop(signum)
    took_s = time.monotonic() - started
    name = signal.Signals(signum).name
    print(f"{name} while {moment}: exit status {code} after {took_s:.1f} s")
    output = launch.text()
    assert code == 0, output[-3000:]
    assert f"{name}: stopped" in output, output[-3000:]
    after = launch.recorded_pids()
    assert "anvil" in after, "anvil's PID was not recorded"  # deployment ran to its end
    left = {what: pid for what, pid in after.items() if running(pid)}
    assert not left, f"left running: {left}"
    assert not processes_naming(launch.folder), processes_naming(launch.folder)
