"""The TypeScript client (clients/typescript) under node's test runner, inside pytest.

- `test_ts_unit`: every PROTOCOL.md §4.6 vector and the perp actions' vectors made by the
  Python SDK (tests/api/test_perp_vectors.py) — bytes, hashes, signatures —, §10.7's
  encrypted-intent vector (committee key, envelope bytes and id, byte-identical to the
  Python SDK) and its refusals, canonical msgpack boundaries, units, ABI, local book; no
  network.
- `test_ts_client_on_localnet`: a real committee (4 member processes, anvil, deployed
  contracts, BTC-PERP with the simulated oracle) started here with the same launcher as
  `seqnet localnet up`; the TS tests place/cancel, open and close a BTC-PERP position
  (leverage, positions on every node, margin, prices, the positions and prices streams,
  margin actions), place, fill and cancel orders sealed to the committee key
  (`encrypted: true`), follow the stream through a lossy proxy (forced gap, resync) and do
  deposit → withdraw → claim on anvil; then the README's example runs as a script. The
  committee and anvil are stopped by PID afterwards, and the node test runner (which
  forks a process per test file) is killed with its whole process group if it overruns.

The package is installed (`npm ci`) when its node_modules is missing or older than its
lock file, and compiled with its pinned `tsc` before the tests run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.chain.localchain import ChainSetup
from node.genesis import ConsensusParams
from node.localnet import down, up
from node.procs import free_base_port, pid_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
NODE_TEST_TIMEOUT_S = 420.0


def _run(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    """Run in PACKAGE in a new process group; on timeout kill the whole group."""
    proc = subprocess.Popen(
        args,
        cwd=PACKAGE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(args)} ran over {timeout_s} s:\n{out[-6000:]}")
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{out[-12000:]}"
    return out


@pytest.fixture(scope="module")
def built() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js 20+ and npm are needed for the TypeScript client")
    installed = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], 300)
    _run(["npm", "run", "--silent", "build"], 300)
    return PACKAGE / "dist" / "test"


def _passed(out: str, at_least: int) -> None:
    """Every test ran and passed (a skipped suite counts no tests at all)."""
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|skipped) (\d+)$", out, re.M)}
    print(out[-600:])
    assert counts.get("fail") == 0 and counts.get("skipped") == 0, out[-4000:]
    assert counts.get("pass") == counts.get("tests", -1) >= at_least, out[-4000:]


def test_ts_unit(built: Path) -> None:
    _passed(_run(["node", "--test", str(built / "unit")], 120), 120)


@pytest.fixture
def localnet(tmp_path: Path) -> Iterator[tuple[list[str], ChainSetup]]:
    params = ConsensusParams(round_timeout_ms=1000, checkpoint_interval_blocks=10)
    net = up(tmp_path / "net", 4, free_base_port(4), 90, chain=True, consensus=params, perps=True)
    chain = ChainSetup.load(Path(net.folder))
    try:
        yield [n.api for n in net.nodes], chain
    finally:
        down(net)
        assert not any(pid_alive(n.pid) for n in net.nodes)
        assert chain.anvil_pid is None or not pid_alive(chain.anvil_pid)


def test_ts_client_on_localnet(built: Path, localnet: tuple[list[str], ChainSetup]) -> None:
    apis, chain = localnet
    env = dict(
        os.environ,
        SEQNET_TS_APIS=",".join(apis),
        SEQNET_TS_CHAIN_URL=chain.url,
        SEQNET_TS_KEYS=",".join("0x" + t.key.hex() for t in chain.traders),
    )
    _passed(_run(["node", "--test", str(built / "integration")], NODE_TEST_TIMEOUT_S, env), 8)
    # The README's example, as a user runs it, with the trader the tests left untouched.
    example = built.parent / "examples" / "quickstart.js"
    key = "0x" + chain.traders[2].key.hex()
    out = _run(["node", str(example), apis[3], chain.url, key], 180)
    assert "claimed" in out, out[-4000:]
