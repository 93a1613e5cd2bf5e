"""Local chains for tests, benchmarks and the localnet, behind one interface.

`tester_chain()` runs py-evm in-process through eth-tester; `anvil_chain()` starts the
anvil ELF from the npm package (`--hardfork prague`, so both chains run the same EVM) on a
free 127.0.0.1 port and stops it by PID. Both yield a `Chain`: a web3 connection, a few
funded dev keys, and the test-only controls (time travel, snapshots) that differ between
the two. Everything else (deploying, calling) goes through plain web3 and is shared.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from web3 import HTTPProvider, Web3

ROOT = Path(__file__).resolve().parent.parent
ANVIL_BIN = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
ANVIL_HARDFORK = "prague"
ANVIL_START_TIMEOUT_S = 15.0
ANVIL_STOP_TIMEOUT_S = 5.0


class Chain(ABC):
    """A running local chain. `keys` are private keys of funded dev accounts."""

    name: str
    w3: Web3
    keys: list[bytes]

    @property
    def chain_id(self) -> int:
        chain_id: int = self.w3.eth.chain_id
        return chain_id

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        ts: int = self.w3.eth.get_block("latest")["timestamp"]
        return ts

    @abstractmethod
    def advance_time(self, seconds: int) -> None:
        """Mine a block at least `seconds` after the latest one."""

    @abstractmethod
    def snapshot(self) -> Any:
        """Capture the chain state; `revert(snapshot)` returns to it."""

    @abstractmethod
    def revert(self, snapshot: Any) -> None: ...


class TesterChain(Chain):
    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider

        self.name = "py-evm"
        self._tester = EthereumTester(PyEVMBackend())
        self.w3 = Web3(EthereumTesterProvider(self._tester))
        self.keys = [k.to_bytes() for k in self._tester.backend.account_keys]

    def advance_time(self, seconds: int) -> None:
        self._tester.time_travel(self.timestamp() + seconds)

    def snapshot(self) -> Any:
        return self._tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        self._tester.revert_to_snapshot(snapshot)


class AnvilChain(Chain):
    def __init__(self, url: str, keys: list[bytes], pid: int) -> None:
        self.name = "anvil"
        self.url = url
        self.pid = pid
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.keys = keys

    def advance_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def snapshot(self) -> Any:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snapshot: Any) -> None:
        response = self.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        if response.get("result") is not True:
            raise RuntimeError(f"evm_revert failed: {response}")


@contextmanager
def tester_chain() -> Iterator[TesterChain]:
    yield TesterChain()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def anvil_chain(
    port: int | None = None, anvil: Path | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[AnvilChain]:
    """Start anvil (the ELF, never the npm .bin wrapper) and stop it by PID on exit."""
    binary = anvil or Path(os.environ.get("SEQNET_ANVIL", ANVIL_BIN))
    if not binary.is_file():
        raise FileNotFoundError(f"anvil not found at {binary}: run ./dev setup (npm ci)")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="seqnet-anvil-") as tmp:
        config = Path(tmp) / "anvil.json"
        log = (Path(tmp) / "anvil.log").open("wb")
        proc = subprocess.Popen(
            [
                str(binary),
                "--hardfork",
                ANVIL_HARDFORK,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--config-out",
                str(config),
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            keys = _wait_for_anvil(proc, url, config, Path(tmp) / "anvil.log")
            yield AnvilChain(url, keys, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(ANVIL_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait_for_anvil(
    proc: subprocess.Popen[bytes], url: str, config: Path, log: Path
) -> list[bytes]:
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 2}))
    deadline = time.monotonic() + ANVIL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"anvil exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if w3.is_connected() and config.exists():
                keys = json.loads(config.read_text())["private_keys"]
                return [bytes.fromhex(k.removeprefix("0x")) for k in keys]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"anvil did not answer on {url} within {ANVIL_START_TIMEOUT_S}s")


@contextmanager
def local_chain(kind: str) -> Iterator[Chain]:
    """`kind` is "py-evm" (in-process) or "anvil"."""
    if kind == "py-evm":
        with tester_chain() as tc:
            yield tc
    elif kind == "anvil":
        with anvil_chain() as ac:
            yield ac
    else:
        raise ValueError(f"unknown chain kind {kind!r}")
