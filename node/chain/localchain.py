"""The local chain of a localnet: anvil, the contracts, funded trader accounts.

API (what `seqnet localnet up` calls, before any node starts):

    setup = up(folder, folder / "genesis.toml")                  # anvil on a free port
    setup = up(folder, genesis, chain_url=URL, deployer_key=KEY)  # an external chain
    print(setup.summary())                                        # url, contract, traders
    stop(setup.anvil_pid)                                         # `localnet down`
    ChainSetup.load(folder)                                       # what `up` saved
    deposit(url, key, token, amount, contract=…)                  # tests, trader CLI

`up` starts anvil (the ELF from npm, `--hardfork prague`, its own session so that it
outlives this process; stopped by PID), deploys a TestToken for every non-ETH asset of
the genesis and the Settlement contract with the members' settlement addresses and
threshold n - f (2f + 1), then REWRITES the genesis file with the contract address, the
real token addresses and the chain's id. That changes the genesis hash, so it must run
before the nodes start. It funds the members (gas for checkpoint submissions) with ETH and
a few deterministic trader accounts with ETH and every token, and saves `chain.json` in
the folder. Blocking (web3): call it from a worker thread inside trio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import HTTPProvider, Web3

from contracts.chain import ANVIL_BIN, ANVIL_HARDFORK, _wait_for_anvil, free_port
from contracts.settlement import ETH, Erc20, Settlement, TokenConfig, deploy, transact
from contracts.signing import address_of
from matching.merkle import keccak
from node.genesis import Genesis, load_genesis
from node.procs import stop_pid as stop

STATE_FILE = "chain.json"
ESCAPE_DELAY_S = 7 * 24 * 3600
TRADERS = 3
TRADER_ETH_WEI = 100 * 10**18
MEMBER_ETH_WEI = 10 * 10**18  # gas for checkpoint submissions
TRADER_TOKENS = 1_000_000  # whole tokens minted to each trader
# Decimals of the mock tokens by symbol; genesis fixes only the unit (engine granularity).
DECIMALS = {"USDC": 6, "USDT": 6, "BTC": 8, "WBTC": 8}
DEFAULT_DECIMALS = 18


@dataclass(frozen=True, slots=True)
class AnvilProcess:
    pid: int
    url: str
    keys: list[bytes]  # anvil's funded dev keys
    log: Path


@dataclass(frozen=True, slots=True)
class Trader:
    key: bytes
    address: bytes


@dataclass(frozen=True, slots=True)
class ChainSetup:
    url: str
    chain_id: int
    settlement: bytes
    deploy_block: int  # chain watchers may start here
    tokens: dict[str, bytes]  # symbol -> token address (ETH: the zero address)
    traders: list[Trader]
    anvil_pid: int | None  # None on an external chain

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "chain_id": self.chain_id,
            "settlement": _hex(self.settlement),
            "deploy_block": self.deploy_block,
            "tokens": {s: _hex(t) for s, t in self.tokens.items()},
            "traders": [{"key": _hex(t.key), "address": _hex(t.address)} for t in self.traders],
            "anvil_pid": self.anvil_pid,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChainSetup:
        return cls(
            url=raw["url"],
            chain_id=raw["chain_id"],
            settlement=_unhex(raw["settlement"]),
            deploy_block=raw["deploy_block"],
            tokens={s: _unhex(t) for s, t in raw["tokens"].items()},
            traders=[Trader(_unhex(t["key"]), _unhex(t["address"])) for t in raw["traders"]],
            anvil_pid=raw["anvil_pid"],
        )

    def save(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ChainSetup:
        return cls.from_json(json.loads((folder / STATE_FILE).read_text()))

    def summary(self) -> str:
        lines = [
            f"chain       {self.url} (chain id {self.chain_id}"
            + (f", anvil pid {self.anvil_pid})" if self.anvil_pid else ")"),
            f"settlement  {_hex(self.settlement)} (deployed in block {self.deploy_block})",
            *(f"token       {s:<6} {_hex(t)}" for s, t in self.tokens.items()),
            "traders (dev keys, funded with ETH and every token; never use them elsewhere):",
            *(f"  {_hex(t.address)}  key {_hex(t.key)}" for t in self.traders),
        ]
        return "\n".join(lines)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _unhex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


# ---------------------------------------------------------------------------------------
# anvil


def start_anvil(
    folder: Path,
    port: int | None = None,
    block_time_s: int | None = None,
    anvil: Path | None = None,
) -> AnvilProcess:
    """Start anvil detached (own session, log in FOLDER/anvil.log); it keeps running
    after this returns and this process exits, until `stop(pid)`. `block_time_s` None:
    a block per transaction only (see `set_block_time`)."""
    binary = anvil or Path(os.environ.get("SEQNET_ANVIL", ANVIL_BIN))
    if not binary.is_file():
        raise FileNotFoundError(f"anvil not found at {binary}: run ./dev setup (npm ci)")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config, log = folder / "anvil.json", folder / "anvil.log"
    config.unlink(missing_ok=True)
    args = [str(binary), "--hardfork", ANVIL_HARDFORK, "--host", "127.0.0.1"]
    args += ["--port", str(port), "--config-out", str(config)]
    if block_time_s is not None:
        args += ["--block-time", str(block_time_s)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        keys = _wait_for_anvil(proc, url, config, log)
    except BaseException:
        stop(proc.pid)
        raise
    return AnvilProcess(proc.pid, url, keys, log)


def set_block_time(url: str, seconds: int) -> None:
    """Mine a block every `seconds` from now on (confirmations need new blocks on an
    otherwise idle anvil); 0 returns to one block per transaction."""
    w3 = Web3(HTTPProvider(url))
    w3.provider.make_request("evm_setIntervalMining", [seconds])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# deployment


def trader_keys(count: int = TRADERS) -> list[bytes]:
    """Deterministic dev keys: keccak("seqnet localnet trader" ‖ i as 4 bytes)."""
    return [keccak(b"seqnet localnet trader" + i.to_bytes(4, "big")) for i in range(count)]


def connect(url: str) -> Web3:
    return Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))


def deploy_for_genesis(
    w3: Web3,
    deployer_key: bytes,
    genesis_path: Path,
    *,
    url: str = "",
    traders: int = TRADERS,
    escape_delay_s: int = ESCAPE_DELAY_S,
) -> ChainSetup:
    """Deploy tokens and Settlement for the genesis at GENESIS_PATH, rewrite it, fund
    members and traders. Blocking."""
    genesis = load_genesis(genesis_path)
    chain_id = int(w3.eth.chain_id)
    assets = []
    for asset in genesis.exchange.assets:
        if asset.token != ETH:
            decimals = DECIMALS.get(asset.symbol.upper(), DEFAULT_DECIMALS)
            token = deploy(w3, deployer_key, "TestToken", asset.symbol, asset.symbol, decimals)
            asset = dataclasses.replace(asset, token=token)
        assets.append(asset)
    members = [m.settlement_address for m in genesis.members]
    settlement = Settlement.deploy(
        w3,
        deployer_key,
        sorted(members),
        genesis.quorum,
        [TokenConfig(a.token, a.unit) for a in assets],
        escape_delay_s,
    )
    deploy_block = int(w3.eth.block_number)
    exchange = dataclasses.replace(genesis.exchange, assets=tuple(assets))
    exchange.check()
    rewritten: Genesis = dataclasses.replace(
        genesis, chain_id=chain_id, settlement_contract=settlement.address, exchange=exchange
    )
    rewritten.write(genesis_path)
    keys = trader_keys(traders)
    for member in members:
        transact(w3, deployer_key, member, b"", value=MEMBER_ETH_WEI)
    for key in keys:
        transact(w3, deployer_key, address_of(key), b"", value=TRADER_ETH_WEI)
        for asset in assets:
            if asset.token != ETH:
                decimals = DECIMALS.get(asset.symbol.upper(), DEFAULT_DECIMALS)
                Erc20(w3, asset.token).mint(
                    deployer_key, address_of(key), TRADER_TOKENS * 10**decimals
                )
    return ChainSetup(
        url=url,
        chain_id=chain_id,
        settlement=settlement.address,
        deploy_block=deploy_block,
        tokens={a.symbol: a.token for a in assets},
        traders=[Trader(k, address_of(k)) for k in keys],
        anvil_pid=None,
    )


def up(
    folder: Path,
    genesis_path: Path,
    *,
    chain_url: str | None = None,
    deployer_key: bytes | None = None,
    port: int | None = None,
    block_time_s: int = 1,
    traders: int = TRADERS,
) -> ChainSetup:
    """Start anvil (unless `chain_url`), deploy, rewrite the genesis, fund; save and
    return the setup. On an external chain `deployer_key` pays for everything."""
    if chain_url is not None:
        if deployer_key is None:
            raise ValueError("--chain needs a deployer key (an account funded on that chain)")
        w3 = connect(chain_url)
        setup = deploy_for_genesis(w3, deployer_key, genesis_path, url=chain_url, traders=traders)
        setup.save(folder)
        return setup
    anvil = start_anvil(folder, port)
    try:
        w3 = connect(anvil.url)
        key = deployer_key or anvil.keys[0]
        setup = deploy_for_genesis(w3, key, genesis_path, url=anvil.url, traders=traders)
        if block_time_s:
            set_block_time(anvil.url, block_time_s)  # after deploying: one block per tx is faster
    except BaseException:
        stop(anvil.pid)
        raise
    setup = dataclasses.replace(setup, anvil_pid=anvil.pid)
    setup.save(folder)
    return setup


def deposit(url: str, key: bytes, token: bytes, amount: int, *, contract: bytes) -> int:
    """Deposit `amount` token base units (ETH: token = zero address) from `key`'s account
    into the Settlement at `contract` (approving the ERC-20 first); return the deposit id."""
    settlement = Settlement(connect(url), contract)
    if token == ETH:
        result = settlement.deposit_eth(key, amount)
    else:
        result = settlement.deposit_token(key, token, amount)
    deposit_id: int = result.event("Deposit").args["depositId"]
    return deposit_id
