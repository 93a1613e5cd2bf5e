"""`seqnet localnet up|status|down`: a whole committee as separate processes on 127.0.0.1.

`up` writes a committee (genesis, keys, one config per node) into a folder, starts one
`seqnet node run` process per member (each in its own session, logging JSON lines to
its folder), waits until every node has committed a block, and prints the endpoints.
Without `--detach` it stays in the foreground showing status and stops the committee on
Ctrl-C; with `--detach` it returns and `status` / `down` find the processes again from
`localnet.json` in the folder.

SIGTERM (a supervisor, `timeout`, a CI job) and SIGHUP (a closed terminal) mean what
Ctrl-C means, at any moment of `up`: the members and anvil started so far are stopped,
then it exits 0. The members and anvil run in sessions of their own (they must outlive
a detached `up`), so no signal reaches them but the ones `down` sends. A signal that
arrives while a child is being spawned, or while the contracts are being deployed, is
taken as soon as that step ends, so that no PID is ever lost; one that arrives while the
committee is being stopped changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from node.genesis import ConsensusParams, committee_init, load_genesis
from node.procs import pid_alive, start_node, stop_pid

STATE_FILE = "localnet.json"
CHAIN_FILE = "chain.json"
DEFAULT_DIR = Path(".localnet")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """A stop signal reached the foreground `up`. A BaseException, as KeyboardInterrupt
    is, so that no `except Exception` on the way takes it for an error."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP, once `install`ed, all raise `Stop` in the main thread,
    as Ctrl-C raises KeyboardInterrupt, except inside `held()`, where the first one is
    recorded and raised when the block ends. Only the first signal counts: one that
    arrives while the committee is being stopped is ignored."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._held = 0
        self._raised = False

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            # An inherited SIG_IGN is a choice (`nohup`, a shell's background job): keep it.
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return  # the stop is under way
        self.received = signum
        if not self._held:
            self._raise()

    def _raise(self) -> None:
        assert self.received is not None
        self._raised = True
        raise Stop(self.received)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A step that must not be cut in the middle (a child being spawned and its PID
        recorded): a stop signal during it is raised when it ends."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held and self.received is not None and not self._raised:
            self._raise()


# The foreground `up` installs them (`main`); without that, `held()` changes nothing.
_signals = StopSignals()


@dataclass
class NodeProcess:
    name: str
    pid: int
    config: str
    api: str
    log: str


@dataclass
class Localnet:
    folder: str
    nodes: list[NodeProcess]

    def save(self) -> None:
        path = Path(self.folder) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load(folder: Path) -> Localnet:
        path = folder / STATE_FILE
        if not path.exists():
            raise SystemExit(f"no localnet in {folder} (no {STATE_FILE}); start one with `up`")
        raw = json.loads(path.read_text())
        return Localnet(raw["folder"], [NodeProcess(**n) for n in raw["nodes"]])


def node_status(api: str, timeout_s: float = 1.0) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{api}/v1/status", timeout=timeout_s)
        if response.status_code == 200:
            status: dict[str, Any] = response.json()
            return status
    except (httpx.HTTPError, ValueError):
        pass
    return None


def wait_committed(net: Localnet, min_height: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = {n.name for n in net.nodes}
    while pending:
        for node in net.nodes:
            if node.name not in pending:
                continue
            if not pid_alive(node.pid):
                tail = Path(node.log).read_text(errors="replace")[-2000:]
                raise SystemExit(f"{node.name} exited during start-up; end of {node.log}:\n{tail}")
            status = node_status(node.api)
            if status and status.get("committed_height", 0) >= min_height:
                pending.discard(node.name)
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {sorted(pending)} to commit; see their logs")
        time.sleep(0.1)


def _wire_chain(folder: Path, chain_url: str | None, deployer_key: bytes | None) -> None:
    """Start anvil (or use an external chain), deploy the contracts, rewrite genesis
    with their addresses (this changes the genesis hash: before any node starts) and
    point every node's config at the chain."""
    from dataclasses import replace

    from node.chain.localchain import up as chain_up
    from node.config import ChainSettings, load_node_config

    setup = chain_up(
        folder, folder / "genesis.toml", chain_url=chain_url, deployer_key=deployer_key
    )
    settings = ChainSettings(
        url=setup.url, confirmations=2, start_block=setup.deploy_block, poll_interval_s=0.5
    )
    for member in load_genesis(folder / "genesis.toml").members:
        path = folder / member.name / "config.toml"
        replace(load_node_config(path), chain=settings).write(path)
    print(setup.summary())


def up(
    folder: Path,
    nodes: int,
    base_port: int,
    timeout_s: float,
    *,
    chain: bool = False,
    chain_url: str | None = None,
    deployer_key: bytes | None = None,
    consensus: ConsensusParams | None = None,
    perps: bool = False,
) -> Localnet:
    """`perps`: genesis also lists BTC-PERP and the members run the simulated oracle
    (`localnet up`, so `./dev run`, does; tests choose)."""
    if (folder / STATE_FILE).exists():
        old = Localnet.load(folder)
        if any(pid_alive(n.pid) for n in old.nodes):
            raise SystemExit(f"a localnet is already running in {folder}; `down` it first")
    if _local_chain_gone(folder):
        # anvil kept its chain in memory: the committee's deposits and checkpoints are
        # gone with it, so the only consistent restart is a fresh committee.
        print(f"the local chain of {folder} is gone; starting a fresh committee")
        shutil.rmtree(folder)
    net = Localnet(str(folder), [])
    try:
        if not (folder / "genesis.toml").exists():
            committee_init(folder, nodes, base_port=base_port, consensus=consensus, perps=perps)
            if chain or chain_url:
                with _signals.held():  # anvil is spawned in there; deploying takes seconds
                    _wire_chain(folder, chain_url, deployer_key)
        genesis = load_genesis(folder / "genesis.toml")
        for member in genesis.members:
            node_dir = folder / member.name
            config = node_dir / "config.toml"
            log = node_dir / "node.log"
            with _signals.held():  # the PID is recorded before a stop can be taken
                pid = start_node(config, log)
                api = f"http://{member.host}:{member.api_port}"
                net.nodes.append(NodeProcess(member.name, pid, str(config), api, str(log)))
                net.save()
        wait_committed(net, 1, timeout_s)
    except BaseException:
        down(net)  # the members started so far, and anvil if this folder started one
        raise
    return net


def down(net: Localnet) -> None:
    for node in net.nodes:
        if pid_alive(node.pid):
            os.kill(node.pid, signal.SIGTERM)
    for node in net.nodes:
        stop_pid(node.pid)
    folder = Path(net.folder)
    if (folder / CHAIN_FILE).exists():
        from node.chain.localchain import ChainSetup

        anvil = ChainSetup.load(folder).anvil_pid
        if anvil is not None and pid_alive(anvil):
            stop_pid(anvil)


def _local_chain_gone(folder: Path) -> bool:
    """Whether this committee was wired to an anvil chain that no longer runs."""
    if not (folder / CHAIN_FILE).exists():
        return False
    from node.chain.localchain import ChainSetup

    anvil = ChainSetup.load(folder).anvil_pid
    return anvil is not None and not pid_alive(anvil)


def status_rows(net: Localnet) -> list[dict[str, Any]]:
    rows = []
    for node in net.nodes:
        alive = pid_alive(node.pid)
        status = node_status(node.api) if alive else None
        rows.append(
            {
                "name": node.name,
                "pid": node.pid,
                "alive": alive,
                "api": node.api,
                **(status or {}),
            }
        )
    return rows


def print_status(net: Localnet) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"localnet in {net.folder}")
    for column in ("node", "pid", "api", "round", "committed", "leader", "peers", "mempool"):
        table.add_column(column)
    for row in status_rows(net):
        table.add_row(
            row["name"],
            str(row["pid"]) + ("" if row["alive"] else " (dead)"),
            row["api"],
            *(
                str(row.get(k, "-"))
                for k in ("round", "committed_height", "leader", "peers", "mempool")
            ),
        )
    Console().print(table)


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start a local committee")
    p_up.add_argument("--nodes", type=int, default=4)
    p_up.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p_up.add_argument("--base-port", type=int, default=7000)
    p_up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for commits")
    p_up.add_argument("--detach", action="store_true", help="return once it commits")
    p_up.add_argument("--fresh", action="store_true", help="delete the folder first")
    p_up.add_argument(
        "--no-chain",
        action="store_true",
        help="no anvil, no contracts: consensus and matching only",
    )
    p_up.add_argument(
        "--chain", metavar="URL", help="deploy to this external chain instead of anvil"
    )
    p_up.add_argument("--deployer-key", help="0x-hex private key paying for --chain deployment")
    for name in ("status", "down"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    folder: Path = args.dir.resolve()
    if args.cmd == "status":
        print_status(Localnet.load(folder))
        return 0
    if args.cmd == "down":
        down(Localnet.load(folder))
        print(f"stopped the localnet in {folder}")
        return 0
    _signals.install()  # before anything is started: see the module docstring
    try:
        return _up_in_foreground(args, folder)
    except Stop as stop:
        # `up` has stopped what it started; a stop in the foreground loop, `finally` did.
        print(f"{stop}: stopped")
        return 0


def _up_in_foreground(args: argparse.Namespace, folder: Path) -> int:
    if args.fresh and folder.exists():
        if (folder / STATE_FILE).exists():
            with _signals.held():
                down(Localnet.load(folder))
        shutil.rmtree(folder)
    deployer = bytes.fromhex(args.deployer_key.removeprefix("0x")) if args.deployer_key else None
    net = up(
        folder,
        args.nodes,
        args.base_port,
        args.timeout,
        chain=not args.no_chain,
        chain_url=args.chain,
        deployer_key=deployer,
        perps=True,
    )
    print_status(net)
    if args.detach:
        print(f"detached; `seqnet localnet status --dir {folder}` / `down --dir {folder}`")
        return 0
    print("committee running; Ctrl-C (or SIGTERM, SIGHUP) stops it", flush=True)
    try:
        while True:
            time.sleep(5)
            print_status(net)
    finally:
        down(net)
