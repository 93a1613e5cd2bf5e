"""Genesis: what a whole committee agrees on before block 0, and `seqnet committee init`.

The genesis file fixes the chain (id, settlement contract), the members (names, keys,
addresses, endpoints, in leader-rotation order), the consensus parameters, the assets and
the markets. Every member loads the same file; its `genesis_hash` (keccak of a canonical
msgpack encoding, docs/OPERATIONS.md) is what peers compare so that two nodes built from
different files never talk as if they shared one. This room also joins a node's own
config, its keys and its genesis entry into a checked `NodeSetup`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgpack

from matching import config as exchange_config
from matching.config import Asset, Market, OptionParams, OptionRules, PerpParams
from node.config import (
    FRESH_DATA_MARK,
    ConfigError,
    HostPort,
    NodeConfig,
    OracleSettings,
    Table,
    first_duplicate,
    load_node_config,
    parse_file,
    verify_threads_for,
    write_toml,
)
from node.fairness.committee import FairnessGenesis, local_dkg
from node.fairness.dkg import member_key_from_settlement, member_public_key
from node.fairness.errors import FairnessError
from node.fairness.group import base_mul, encode_point
from node.fairness.keying import KeyingParams
from node.fairness.threshold import DEV_CHAIN_ID, KeyShare, ThresholdPublicKey
from node.intents import ZERO_ADDRESS, Domain, format_address, keccak256
from node.keys import (
    KeyFileError,
    NodeKeys,
    load_node_keys,
    read_private_file,
    write_node_keys,
    write_private_file,
)

GENESIS_FORMAT: Final = "seqnet-genesis/1"
MAX_MEMBERS: Final = 100
U64_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    ed25519_pubkey: bytes  # 32 bytes: consensus and transport identity
    settlement_address: bytes  # 20 bytes: signs checkpoints on chain
    host: str
    consensus_port: int
    api_port: int

    @property
    def consensus_endpoint(self) -> HostPort:
        return HostPort(self.host, self.consensus_port)

    @property
    def api_endpoint(self) -> HostPort:
        return HostPort(self.host, self.api_port)


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    round_timeout_ms: int = 1000
    max_block_entries: int = 2000
    checkpoint_interval_blocks: int = 100


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: int
    members: tuple[Member, ...]
    exchange: exchange_config.Genesis  # assets, markets, fee account: matching/ owns these
    consensus: ConsensusParams = field(default_factory=ConsensusParams)
    settlement_contract: bytes | None = None  # None until the contract is deployed
    # The committee key for encrypted intents (docs/PROTOCOL.md §10); None: not offered.
    # Dealt in one process: development chain only (`local_dkg`).
    fairness: FairnessGenesis | None = None
    # Or the members' DKG over the committed log (§10.9): their DKG keys and phases.
    dkg: KeyingParams | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived -----------------------------------------------------------------------

    @property
    def fault_tolerance(self) -> int:
        """f: members that may fail (n ≥ 3f + 1)."""
        return (len(self.members) - 1) // 3

    @property
    def quorum(self) -> int:
        """Votes for a QC (and checkpoint signatures for the contract): n - f."""
        return len(self.members) - self.fault_tolerance

    def member(self, name: str) -> tuple[int, Member]:
        for index, member in enumerate(self.members):
            if member.name == name:
                return index, member
        raise ConfigError(f"no member named {name!r} in genesis")

    def domain(self) -> Domain:
        """The EIP-712 domain of trader intents; without a settlement contract yet, the
        zero address stands in (a development committee only)."""
        return Domain(self.chain_id, self.settlement_contract or ZERO_ADDRESS)

    # -- encodings -----------------------------------------------------------------------

    def genesis_hash(self) -> bytes:
        """keccak256(msgpack({"format": GENESIS_FORMAT, **to_toml()})): independent of
        how the file was written (order, spacing, comments), since it is re-encoded from
        the parsed values."""
        canonical = {"format": GENESIS_FORMAT, **self.to_toml()}
        packed: bytes = msgpack.packb(canonical, use_bin_type=True)
        return keccak256(packed)

    def to_toml(self) -> dict[str, Any]:
        data: dict[str, Any] = {"chain_id": self.chain_id}
        if self.settlement_contract is not None:
            data["settlement_contract"] = format_address(self.settlement_contract)
        data["consensus"] = dataclasses.asdict(self.consensus)
        data["members"] = [
            {
                "name": m.name,
                "ed25519_pubkey": m.ed25519_pubkey.hex(),
                "settlement_address": format_address(m.settlement_address),
                "host": m.host,
                "consensus_port": m.consensus_port,
                "api_port": m.api_port,
            }
            for m in self.members
        ]
        data["exchange"] = self.exchange.to_dict()
        if self.fairness is not None:
            data["fairness"] = self.fairness.to_toml()
        if self.dkg is not None:
            data["dkg"] = {
                "member_keys": ["0x" + k.hex() for k in self.dkg.member_keys],
                "phase_blocks": self.dkg.phase_blocks,
                "rekey_interval_blocks": self.dkg.rekey_interval_blocks,
            }
            if self.dkg.grace_blocks is not None:  # absent: one phase (genesis hashes stay)
                data["dkg"]["grace_blocks"] = self.dkg.grace_blocks
        return data

    def write(self, path: Path) -> None:
        write_toml(path, self.to_toml())


def _validate(genesis: Genesis) -> None:
    """Cross-field rules; per-field types and ranges are checked by the parser."""
    problems = [
        ("duplicate member name", first_duplicate(m.name for m in genesis.members)),
        ("duplicate ed25519_pubkey", first_duplicate(m.ed25519_pubkey for m in genesis.members)),
        (
            "duplicate settlement_address",
            first_duplicate(m.settlement_address for m in genesis.members),
        ),
        (
            "duplicate consensus endpoint",
            first_duplicate(m.consensus_endpoint for m in genesis.members),
        ),
    ]
    for what, duplicate in problems:
        if duplicate is not None:
            shown = duplicate.hex() if isinstance(duplicate, bytes) else duplicate
            raise ConfigError(f"{what}: {shown}")
    if not genesis.members:
        raise ConfigError("members: at least one member is required")
    if not 1 <= genesis.chain_id <= U64_MAX:
        raise ConfigError("chain_id must be in 1..2**64-1")
    exchange = genesis.exchange
    if exchange.perp_markets:
        # The engine counts oracle entries by the members' settlement addresses, and the
        # node signs them with the members' identity keys: the two lists must match.
        addresses = tuple(m.settlement_address for m in genesis.members)
        if exchange.oracle_members != addresses:
            raise ConfigError("exchange.oracle_members must be the members' settlement addresses")
        if exchange.oracle_quorum != genesis.quorum:
            raise ConfigError(f"exchange.oracle_quorum must be the quorum, {genesis.quorum}")
    if genesis.fairness is not None:
        if genesis.chain_id != DEV_CHAIN_ID:
            raise ConfigError(
                f"fairness: a dealt committee key is for the development chain {DEV_CHAIN_ID} "
                "only; a production committee runs the DKG ([dkg])"
            )
        if genesis.dkg is not None:
            raise ConfigError("fairness: a committee key and a [dkg] table exclude each other")
        try:
            genesis.fairness.check_committee(len(genesis.members))
        except FairnessError as error:
            raise ConfigError(f"fairness: {error}") from None
    if genesis.dkg is not None:
        if genesis.dkg.chain_id != genesis.chain_id:
            raise ConfigError("dkg: the chain id is genesis's")
        if len(genesis.dkg.member_keys) != len(genesis.members):
            raise ConfigError(f"dkg.member_keys: one key per member ({len(genesis.members)})")


# ---------------------------------------------------------------------------------------
# Parsing


def _parse_member(t: Table) -> Member:
    member = Member(
        name=t.text("name", max_len=64),
        ed25519_pubkey=t.hex_bytes("ed25519_pubkey", 32, prefix=False),
        settlement_address=t.address("settlement_address"),
        host=t.text("host", max_len=253),
        consensus_port=t.integer("consensus_port", 1, 65535),
        api_port=t.integer("api_port", 1, 65535),
    )
    t.done()
    return member


def _only_known_keys(raw: Any, allowed: tuple[type, ...], where: str) -> None:
    """matching/ ignores keys it does not know; a typo in genesis must be an error."""
    if isinstance(raw, dict):
        known = {f.name for kind in allowed for f in dataclasses.fields(kind)} | {"kind"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key")


def _parse_exchange(raw: Any) -> exchange_config.Genesis:
    _only_known_keys(raw, (exchange_config.Genesis,), "exchange")
    if isinstance(raw, dict):
        markets = (Market, PerpParams, OptionParams)
        for key, kinds in (("assets", (Asset,)), ("markets", markets)):
            items = raw.get(key)
            for i, item in enumerate(items if isinstance(items, list) else []):
                _only_known_keys(item, kinds, f"exchange.{key}[{i}]")
    try:
        return exchange_config.Genesis.from_dict(raw)
    except exchange_config.ConfigError as error:
        raise ConfigError(f"exchange: {error}") from None


def _parse_consensus(t: Table) -> ConsensusParams:
    params = ConsensusParams(
        round_timeout_ms=t.integer("round_timeout_ms", 10, 600_000),
        max_block_entries=t.integer("max_block_entries", 1, 100_000),
        checkpoint_interval_blocks=t.integer("checkpoint_interval_blocks", 1, 1_000_000),
    )
    t.done()
    return params


def _parse_fairness(t: Table) -> FairnessGenesis:
    epoch = t.integer("epoch", 0, U64_MAX)
    text = t.text("committee_key", max_len=2 * (5 + 33 * (MAX_MEMBERS + 1)) + 2)
    try:
        fairness = FairnessGenesis(epoch, ThresholdPublicKey.decode(bytes.fromhex(text[2:])))
    except (FairnessError, ValueError) as error:
        raise t.error("committee_key", f"not a committee key (0x + hex): {error}") from None
    if not text.startswith("0x"):
        raise t.error("committee_key", "must be 0x + hex")
    t.done()
    return fairness


def _parse_dkg(t: Table, chain_id: int) -> KeyingParams:
    raw = t.raw("member_keys")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_MEMBERS:
        raise t.error("member_keys", f"must be an array of 1..{MAX_MEMBERS} keys")
    keys = []
    for i, item in enumerate(raw):
        k = Table({"key": item}, f"{t._label('member_keys')}[{i}]").hex_bytes("key", 33, True)
        keys.append(k)
    try:
        params = KeyingParams(
            chain_id,
            tuple(keys),
            t.integer("phase_blocks", 2, 100_000),
            t.integer("rekey_interval_blocks", 0, U64_MAX, default=0),
            None
            if t.optional_raw("grace_blocks", None) is None
            else t.integer("grace_blocks", 0, 100_000),
        )
        params.config(0)  # the keys are curve points, no two equal
    except FairnessError as error:
        raise ConfigError(f"dkg: {error.message}") from None
    t.done()
    return params


def _parse_genesis(t: Table) -> Genesis:
    chain_id = t.integer("chain_id", 1, U64_MAX)
    genesis = Genesis(
        chain_id=chain_id,
        settlement_contract=t.optional_address("settlement_contract"),
        consensus=_parse_consensus(t.table("consensus")),
        members=tuple(t.array("members", _parse_member, MAX_MEMBERS)),
        exchange=_parse_exchange(t.raw("exchange")),
        fairness=None
        if t.optional_raw("fairness", None) is None
        else _parse_fairness(t.table("fairness")),
        dkg=None if t.optional_raw("dkg", None) is None else _parse_dkg(t.table("dkg"), chain_id),
    )
    t.done()
    return genesis


def load_genesis(path: Path) -> Genesis:
    return parse_file(path, _parse_genesis)


# ---------------------------------------------------------------------------------------
# A node's checked view: its config, genesis, place in the committee and keys


@dataclass(frozen=True, slots=True)
class NodeSetup:
    config: NodeConfig
    genesis: Genesis
    index: int  # position in genesis.members (leader rotation order)
    member: Member
    keys: NodeKeys
    # This member's share of the committee key (genesis [fairness] and the config's
    # `fairness_key`); None: the member makes no decryption shares.
    fairness_share: KeyShare | None = None


def load_node_setup(config_path: Path) -> NodeSetup:
    """Load a node's config, its genesis and its keys, and check that the keys are the
    ones genesis lists for this member. Raises ConfigError or KeyFileError."""
    config = load_node_config(config_path)
    genesis = load_genesis(config.genesis)
    index, member = genesis.member(config.name)
    keys = load_node_keys(config.name, config.identity_key, config.settlement_key)
    if keys.identity_public != member.ed25519_pubkey:
        raise KeyFileError(
            f"{config.identity_key}: public key {keys.identity_public.hex()} is not "
            f"{member.name}'s ed25519_pubkey in {config.genesis}"
        )
    if keys.settlement_address != member.settlement_address:
        raise KeyFileError(
            f"{config.settlement_key}: address {format_address(keys.settlement_address)} is "
            f"not {member.name}'s settlement_address in {config.genesis}"
        )
    if genesis.dkg is not None:
        mine = member_public_key(member_key_from_settlement(keys.settlement.secret))
        if genesis.dkg.member_keys[index] != mine:
            raise KeyFileError(
                f"{config.settlement_key}: its DKG key is not {member.name}'s in {config.genesis}"
            )
    share = None
    if genesis.fairness is not None and config.fairness_key is not None:
        share = load_fairness_share(config.fairness_key, genesis.fairness.key, index + 1)
    return NodeSetup(config, genesis, index, member, keys, share)


FAIRNESS_KIND: Final = "threshold-share"


def fairness_key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.fairness.key"


def load_fairness_share(path: Path, key: ThresholdPublicKey, index: int) -> KeyShare:
    """Member `index`'s secret share (mode 0600 file), checked against genesis's key."""
    secret = int.from_bytes(read_private_file(path, FAIRNESS_KIND), "big")
    if not 1 <= index <= key.members or not 0 < secret < 2**256:
        raise KeyFileError(f"{path}: no share of member {index} of the committee key")
    try:
        matches = encode_point(base_mul(secret)) == key.verification_shares[index - 1]
    except (FairnessError, ValueError):
        matches = False
    if not matches:
        raise KeyFileError(f"{path}: not member {index}'s share of the genesis committee key")
    return KeyShare(index, secret)


# ---------------------------------------------------------------------------------------
# Defaults and `seqnet committee init`


def _fairness_ceremony(
    chain_id: int, keys: list[NodeKeys]
) -> tuple[FairnessGenesis, tuple[KeyShare, ...]]:
    """The committee key of epoch 0, from an in-process DKG of every member."""
    import os

    try:
        public, shares = local_dkg(
            chain_id, 0, [k.settlement.secret for k in keys], [os.urandom(32) for _ in keys]
        )
    except FairnessError as error:
        raise ConfigError(f"encrypted intents: {error}") from None
    return FairnessGenesis(0, public), shares


def _placeholder_token(symbol: str) -> bytes:
    """A stand-in token address until real (or local mock) tokens are deployed."""
    return keccak256(f"seqnet placeholder token {symbol}".encode())[12:]


def default_exchange(fee_account: bytes) -> exchange_config.Genesis:
    exchange = exchange_config.Genesis(default_assets(), default_markets(), fee_account)
    exchange.check()
    return exchange


def default_assets() -> tuple[Asset, ...]:
    return (
        Asset(0, "ETH", ZERO_ADDRESS, 10**9),  # engine counts gwei
        Asset(1, "USDC", _placeholder_token("USDC"), 1),  # 6 decimals: micro-USDC
        Asset(2, "BTC", _placeholder_token("BTC"), 1),  # 8 decimals (WBTC): satoshi
    )


def default_markets() -> tuple[Market, ...]:
    # ETH-USDC: lot 0.001 ETH; tick 0.01 USDC per ETH = 10 micro-USDC per lot.
    # BTC-USDC: lot 0.0001 BTC; tick 0.1 USDC per BTC = 10 micro-USDC per lot.
    return (
        Market(0, "ETH-USDC", 0, 1, 10**6, 10, 2, 5),
        Market(1, "BTC-USDC", 2, 1, 10**4, 10, 2, 5),
    )


BTC_START_PRICE: Final = "97000"  # USDC per BTC: where the localnet's simulated oracle starts
INSURANCE_ACCOUNT: Final = keccak256(b"seqnet insurance fund")[12:]  # the backstop account


def perp_market() -> Market:
    """BTC-PERP, settled in USDC: lot 0.0001 BTC (sizes in satoshi, base_decimals 8), tick
    0.1 USDC per BTC (10 micro-USDC per lot), 10x at most with 5 % maintenance up to
    1,000,000 USDC of notional, then 5x / 10 %; hourly funding."""
    return Market(
        2,
        "BTC-PERP",
        None,
        1,
        10**4,
        10,
        2,
        5,
        perp=PerpParams(
            margin_tiers=((10**12, 1_000, 500), (10**13, 2_000, 1_000)),
            max_leverage=10,
            funding_interval_ms=3_600_000,
            funding_cap_ppb=40_000_000,
            interest_ppb=12_500,
            liquidation_fee_bps=100,
            oracle_max_age_ms=15_000,
            base_decimals=8,
        ),
    )


DAY_MS: Final = 86_400_000
OPTION_STRIKES: Final = (90_000, 97_000, 105_000)  # USDC per BTC, around BTC_START_PRICE
OPTION_VOL_E9: Final = 600_000_000  # 60 %: the committee vol until members publish one


def option_chain(now_ms: int, first_id: int = 3) -> tuple[Market, ...]:
    """A small BTC option chain on BTC-PERP's index: calls and puts at OPTION_STRIKES for
    two expiries, the next 08:00 UTC at least a day away and a week after it. A contract
    is 1 BTC (10,000 BTC-PERP lots), so strikes and prices are micro-USDC per BTC; tick
    0.1 USDC."""
    first = (now_ms // DAY_MS + 2) * DAY_MS + 8 * 3_600_000
    markets: list[Market] = []
    for expiry_ms in (first, first + 7 * DAY_MS):
        day = time.strftime("%d%b%y", time.gmtime(expiry_ms // 1000)).upper()
        for right in ("call", "put"):
            for strike in OPTION_STRIKES:
                option = OptionParams(
                    underlying=2,
                    strike=strike * 10**6,
                    expiry_ms=expiry_ms,
                    right=right,
                    underlying_lots=10**4,
                    vol_e9=OPTION_VOL_E9,
                )
                symbol = f"BTC-{day}-{strike}-{right[0].upper()}"
                market_id = first_id + len(markets)
                markets.append(Market(market_id, symbol, None, 1, 1, 100_000, 2, 5, option=option))
    return tuple(markets)


def committee_init(
    out: Path,
    nodes: int,
    *,
    base_port: int = 7000,
    chain_id: int = 31337,
    host: str = "127.0.0.1",
    settlement_contract: bytes | None = None,
    fee_account: bytes | None = None,
    consensus: ConsensusParams | None = None,
    perps: bool = False,
    now_ms: int | None = None,
    encryption: bool | None = None,
    dkg_phase_blocks: int | None = None,
    rekey_interval_blocks: int = 0,
    dkg_grace_blocks: int | None = None,
) -> Genesis:
    """Write OUT/genesis.toml and OUT/nodeI/{config.toml, keys/…} for `nodes` members.
    `encryption` (default: on the development chain only): run the DKG for every member
    in this process and write the committee key into genesis (`[fairness]`, epoch 0) and
    each member's share to keys/NAME.fairness.key (`local_dkg`; refused on other chains).
    By default any other chain gets a `[dkg]` table instead (`encryption=False`: no
    encrypted intents at all): the members run epoch 0's DKG over their
    committed log when they start (`dkg_phase_blocks` per phase, default max(10, 3n);
    a new key every `rekey_interval_blocks`, 0: never; the previous key still opens
    envelopes for `dkg_grace_blocks` after a re-key, default one phase).
    With `perps`, genesis also lists BTC-PERP (`perp_market`) and every member's config
    runs the simulated oracle from BTC_START_PRICE, and a small BTC option chain
    (`option_chain`, expiries counted from `now_ms`, the wall clock if None).

    Ports: consensus base+i, API base+1000+i, metrics base+2000+i."""
    if not 1 <= nodes <= MAX_MEMBERS:
        raise ConfigError(f"--nodes must be in 1..{MAX_MEMBERS}")
    if base_port < 1 or base_port + 2000 + nodes > 65535:
        raise ConfigError("--base-port leaves no room for the node ports")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; refusing to overwrite a committee")
    out.mkdir(parents=True, exist_ok=True)
    members: list[Member] = []
    configs: list[tuple[Path, NodeConfig]] = []
    all_keys = [NodeKeys.generate(f"node{i}") for i in range(nodes)]
    # None: the default (dealt on the development chain, the members' DKG elsewhere).
    with_dkg = encryption is None and chain_id != DEV_CHAIN_ID
    if encryption is None:
        encryption = chain_id == DEV_CHAIN_ID
    fairness, fairness_shares = _fairness_ceremony(chain_id, all_keys) if encryption else (None, ())
    dkg = None
    if with_dkg:  # checked before anything is written
        dkg = KeyingParams(
            chain_id,
            tuple(
                member_public_key(member_key_from_settlement(k.settlement.secret)) for k in all_keys
            ),
            dkg_phase_blocks or max(10, 3 * nodes),
            rekey_interval_blocks,
            dkg_grace_blocks,
        )
    for i in range(nodes):
        name = f"node{i}"
        keys = all_keys[i]
        node_dir = out / name
        paths = write_node_keys(keys, node_dir / "keys")
        share_path = None
        if fairness_shares:
            share_path = fairness_key_path(node_dir / "keys", name)
            secret = fairness_shares[i].secret.to_bytes(32, "big")
            write_private_file(share_path, f"{FAIRNESS_KIND}:{secret.hex()}\n".encode())
        member = Member(
            name=name,
            ed25519_pubkey=keys.identity_public,
            settlement_address=keys.settlement_address,
            host=host,
            consensus_port=base_port + i,
            api_port=base_port + 1000 + i,
        )
        members.append(member)
        config = NodeConfig(
            name=name,
            genesis=out / "genesis.toml",
            data_dir=node_dir / "data",
            identity_key=paths.identity,
            settlement_key=paths.settlement,
            consensus_listen=member.consensus_endpoint,
            api_listen=member.api_endpoint,
            metrics_listen=HostPort(host, base_port + 2000 + i),
            verify_threads=verify_threads_for(nodes),  # all of them on `host`
            oracle=OracleSettings(seed=chain_id, start={"BTC-PERP": BTC_START_PRICE})
            if perps
            else OracleSettings(),
            fairness_key=share_path,
        )
        configs.append((node_dir / "config.toml", config))
        config.data_dir.mkdir(parents=True)
        (config.data_dir / FRESH_DATA_MARK).write_text(
            "made by committee init; the member deletes this file when it first starts\n"
        )
    genesis = Genesis(
        chain_id=chain_id,
        settlement_contract=settlement_contract,
        consensus=consensus or ConsensusParams(),
        members=tuple(members),
        exchange=default_exchange(fee_account or members[0].settlement_address),
        fairness=fairness,
        dkg=dkg,
    )
    if perps:
        addresses = tuple(m.settlement_address for m in members)
        genesis = dataclasses.replace(
            genesis,
            exchange=dataclasses.replace(
                genesis.exchange,
                markets=(
                    *genesis.exchange.markets,
                    perp_market(),
                    *option_chain(int(time.time() * 1000) if now_ms is None else now_ms),
                ),
                insurance_account=INSURANCE_ACCOUNT,
                option_rules=OptionRules(),
                oracle_members=addresses,
                oracle_quorum=genesis.quorum,
            ),
        )
        genesis.exchange.check()
    genesis.write(out / "genesis.toml")
    for path, config in configs:
        config.write(path)
    return genesis


def _cli_address(options: Table, key: str) -> bytes | None:
    return None if options.optional_text(key) is None else options.address(key)


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Create a committee: keys, genesis.toml and one config per node."
    )
    parser.add_argument("--nodes", type=int, required=True, help="number of members")
    parser.add_argument("--out", type=Path, required=True, help="output directory (new/empty)")
    parser.add_argument("--base-port", type=int, default=7000, help="first consensus port")
    parser.add_argument("--chain-id", type=int, default=31337)
    parser.add_argument("--host", default="127.0.0.1", help="host every member listens on")
    parser.add_argument("--settlement-contract", help="0x address, if already deployed")
    parser.add_argument("--fee-account", help="0x address (default: node0's settlement address)")
    parser.add_argument(
        "--dkg-phase-blocks",
        type=int,
        help="chains other than 31337: each DKG phase in committed blocks (default max(10, 3n))",
    )
    parser.add_argument(
        "--rekey-interval-blocks",
        type=int,
        default=0,
        help="chains other than 31337: a new committee key every N blocks (default 0: never)",
    )
    parser.add_argument(
        "--dkg-grace-blocks",
        type=int,
        help="chains other than 31337: blocks after a re-key in which the previous key "
        "still opens envelopes (default: one DKG phase)",
    )
    args = parser.parse_args(argv)
    try:
        given = {"settlement_contract": args.settlement_contract, "fee_account": args.fee_account}
        options = Table({k: v for k, v in given.items() if v is not None}, "")
        genesis = committee_init(
            args.out,
            args.nodes,
            base_port=args.base_port,
            chain_id=args.chain_id,
            host=args.host,
            settlement_contract=_cli_address(options, "settlement_contract"),
            fee_account=_cli_address(options, "fee_account"),
            dkg_phase_blocks=args.dkg_phase_blocks,
            rekey_interval_blocks=args.rekey_interval_blocks,
            dkg_grace_blocks=args.dkg_grace_blocks,
        )
    except (ConfigError, KeyFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except FairnessError as error:  # bad [dkg] parameters
        print(f"error: dkg: {error.message}", file=sys.stderr)
        return 1
    summary = {
        "genesis": str(args.out / "genesis.toml"),
        "genesis_hash": "0x" + genesis.genesis_hash().hex(),
        "chain_id": genesis.chain_id,
        "quorum": genesis.quorum,
        "members": [
            {
                "name": m.name,
                "config": str(args.out / m.name / "config.toml"),
                "ed25519_pubkey": m.ed25519_pubkey.hex(),
                "settlement_address": format_address(m.settlement_address),
                "consensus": str(m.consensus_endpoint),
                "api": str(m.api_endpoint),
            }
            for m in genesis.members
        ],
    }
    print(json.dumps(summary, indent=2))
    return 0
