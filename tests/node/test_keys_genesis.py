"""Key files (0600, refused when exposed), genesis and node configs (strict, hashed), and
the `seqnet keys generate` / `seqnet committee init` commands."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from node import cli
from node.config import ConfigError, HostPort, load_node_config, write_toml
from node.genesis import Genesis, committee_init, load_genesis, load_node_setup
from node.intents import ZERO_ADDRESS, address_of_private_key, format_address
from node.keys import (
    KeyFileError,
    KeyPaths,
    NodeKeys,
    load_identity_key,
    load_settlement_key,
    write_node_keys,
)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------------------
# Keys


def test_generate_writes_private_files_0600(tmp_path: Path, permissive_umask: None) -> None:
    keys = NodeKeys.generate("alpha")
    paths = write_node_keys(keys, tmp_path / "keys")
    assert _mode(paths.identity) == 0o600
    assert _mode(paths.settlement) == 0o600
    assert _mode(tmp_path / "keys") == 0o700
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "alpha.ed25519.key",
        "alpha.pub.json",
        "alpha.secp256k1.key",
    ]
    identity = load_identity_key(paths.identity)
    settlement = load_settlement_key(paths.settlement)
    assert bytes(identity) == bytes(keys.identity)
    assert settlement.secret == keys.settlement.secret
    public = json.loads(paths.public.read_text())
    assert public == keys.public_summary()
    assert public["settlement_address"] == format_address(address_of_private_key(settlement))
    message = identity.sign(b"hello")
    VerifyKey(bytes.fromhex(public["ed25519_pubkey"])).verify(message)


def test_keys_are_never_overwritten(tmp_path: Path) -> None:
    first = NodeKeys.generate("n")
    write_node_keys(first, tmp_path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_node_keys(NodeKeys.generate("n"), tmp_path)
    assert bytes(load_identity_key(KeyPaths.of(tmp_path, "n").identity)) == bytes(first.identity)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_loaders_refuse_exposed_key_files(tmp_path: Path, mode: int) -> None:
    paths = write_node_keys(NodeKeys.generate("n"), tmp_path)
    for path, load in (
        (paths.identity, load_identity_key),
        (paths.settlement, load_settlement_key),
    ):
        path.chmod(mode)
        with pytest.raises(KeyFileError, match=r"group or others.*chmod 600"):
            load(path)
        path.chmod(0o400)
        load(path)


def test_loaders_refuse_bad_files(tmp_path: Path) -> None:
    paths = write_node_keys(NodeKeys.generate("n"), tmp_path)
    with pytest.raises(KeyFileError, match="not a ed25519 key file"):
        load_identity_key(paths.settlement)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_identity_key(tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_identity_key(tmp_path)
    for content, message in (
        (b"ed25519:zz\n", "not hex"),
        (b"ed25519:abcd\n", "not 32 bytes"),
        (b"ed25519:" + b"0" * 300, "too large"),
    ):
        bad = tmp_path / f"bad{len(content)}.key"
        fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, content)
        os.close(fd)
        with pytest.raises(KeyFileError, match=message):
            load_identity_key(bad)
    zero = tmp_path / "zero.key"
    zero.write_text("secp256k1:" + "00" * 32)
    zero.chmod(0o600)
    with pytest.raises(KeyFileError, match="invalid secp256k1"):
        load_settlement_key(zero)


def test_keys_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "generate", "--out", str(tmp_path), "--name", "val1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "val1"
    paths = KeyPaths.of(tmp_path, "val1")
    assert summary["files"]["identity"] == str(paths.identity)
    assert bytes(load_identity_key(paths.identity).verify_key).hex() == summary["ed25519_pubkey"]
    assert cli.main(["keys", "generate", "--out", str(tmp_path), "--name", "val1"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# committee init, genesis and configs


@pytest.fixture(scope="module")
def committee(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Genesis]:
    out = tmp_path_factory.mktemp("committee")
    return out, committee_init(out, 4, base_port=17000)


def test_committee_init_layout(committee: tuple[Path, Genesis]) -> None:
    out, genesis = committee
    assert (genesis.chain_id, genesis.quorum, genesis.fault_tolerance) == (31337, 3, 1)
    assert genesis.settlement_contract is None
    assert genesis.domain().verifying_contract == ZERO_ADDRESS
    assert [m.consensus_port for m in genesis.members] == [17000, 17001, 17002, 17003]
    assert [m.api_port for m in genesis.members] == [18000, 18001, 18002, 18003]
    assert genesis.exchange.fee_account == genesis.members[0].settlement_address
    assert {a.symbol for a in genesis.exchange.assets} >= {"ETH", "USDC"}
    assert load_genesis(out / "genesis.toml") == genesis
    for index, member in enumerate(genesis.members):
        setup = load_node_setup(out / member.name / "config.toml")
        assert (setup.index, setup.member, setup.genesis) == (index, member, genesis)
        assert setup.keys.identity_public == member.ed25519_pubkey
        assert setup.config.consensus_listen == HostPort("127.0.0.1", 17000 + index)
        assert setup.config.metrics_listen == HostPort("127.0.0.1", 19000 + index)
        assert setup.config.data_dir == (out / member.name / "data").resolve()
        assert _mode(setup.config.identity_key) == 0o600


def test_genesis_hash_is_stable_and_sensitive(committee: tuple[Path, Genesis]) -> None:
    out, genesis = committee
    text = (out / "genesis.toml").read_text()
    reordered = out / "reordered.toml"
    # Same values, written differently: comments, and consensus params in another order.
    lines = text.replace("[consensus]\n", "# a comment\n[consensus]\n").splitlines()
    reordered.write_text("\n".join(lines) + "\n")
    assert load_genesis(reordered).genesis_hash() == genesis.genesis_hash()
    for old, new in (
        ("consensus_port = 17003", "consensus_port = 17004"),
        ("round_timeout_ms = 1000", "round_timeout_ms = 1001"),
        ("taker_fee_bps = 5", "taker_fee_bps = 4"),
    ):
        changed = out / "changed.toml"
        changed.write_text(text.replace(old, new, 1))
        assert load_genesis(changed).genesis_hash() != genesis.genesis_hash(), old
    # Another chain id (without the dealt key, which only the development chain takes).
    base, changed = out / "base.toml", out / "changed.toml"
    plain = text.split("[fairness]")[0]
    base.write_text(plain)
    changed.write_text(plain.replace("chain_id = 31337", "chain_id = 31338", 1))
    assert load_genesis(changed).genesis_hash() != load_genesis(base).genesis_hash()
    assert len(genesis.genesis_hash()) == 32


def test_one_member_committee(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    contract = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    args = ["committee", "init", "--nodes", "1", "--out", str(tmp_path / "c")]
    assert cli.main([*args, "--settlement-contract", contract, "--chain-id", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    genesis = load_genesis(tmp_path / "c" / "genesis.toml")
    assert summary["genesis_hash"] == "0x" + genesis.genesis_hash().hex()
    assert (genesis.quorum, genesis.chain_id) == (1, 5)
    assert format_address(genesis.domain().verifying_contract) == contract
    assert cli.main(args) == 1  # not empty any more
    assert "not empty" in capsys.readouterr().err
    assert cli.main([*args[:-1], str(tmp_path / "d"), "--fee-account", "0x12"]) == 1
    assert "fee_account" in capsys.readouterr().err


def _genesis_variant(committee: tuple[Path, Genesis], tmp: Path, old: str, new: str) -> Path:
    text = (committee[0] / "genesis.toml").read_text()
    assert old in text, old
    path = tmp / "genesis.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("chain_id = 31337", "chain_id = 0", r"chain_id: must be an integer in 1\.\."),
        ("chain_id = 31337", "chain_id = '1'", "chain_id: must be an integer"),
        ("chain_id = 31337", "chainid = 31337", "chain_id: missing"),
        ("chain_id = 31337", "chain_id = 31337\ncolor = 1", "color: unknown key"),
        ('name = "node1"', 'name = "node0"', "duplicate member name: node0"),
        ("consensus_port = 17001", "consensus_port = 70000", r"members\[1\]\.consensus_port"),
        ("consensus_port = 17001", "consensus_port = 17000", "duplicate consensus endpoint"),
        ('ed25519_pubkey = "', 'ed25519_pubkey = "00', r"members\[0\]\.ed25519_pubkey: must be"),
        ('settlement_address = "0x', 'settlement_address = "', r"settlement_address: must be 0x"),
        ("max_block_entries = 2000", "max_block_entrie = 2000", "consensus.max_block_entrie"),
        ("[consensus]", "[consensu]", "consensus: missing"),
        ("base = 0", "base = 9", "exchange: .*unknown base or quote"),
        ("unit = 1000000000", "unit = 1000000001", "exchange: .*power of ten"),
        ("lot_size = 1000000", "lot_size = 1000000\nlot = 2", r"exchange\.markets\[0\]\.lot"),
        ('fee_account = "0x', 'fee_acount = "0x', r"exchange\.fee_acount: unknown key"),
        ("[[members]]", "[[members]", "not valid TOML"),
    ],
)
def test_bad_genesis_is_a_clear_error(
    committee: tuple[Path, Genesis], tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _genesis_variant(committee, tmp_path, old, new)
    with pytest.raises(ConfigError, match=message) as error:
        load_genesis(path)
    assert str(error.value).startswith(str(path))


def test_missing_or_binary_genesis(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_genesis(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_genesis(tmp_path / "bin.toml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('log_level = "info"', 'log_level = "loud"', "log_level: must be one of"),
        ('api = "127.0.0.1:18000"', 'api = "127.0.0.1"', "listen.api: .*not host:port"),
        ('api = "127.0.0.1:18000"', 'api = "127.0.0.1:0"', "listen.api"),
        ('name = "node0"', 'name = "node0"\nextra = 1', "extra: unknown key"),
        ('data_dir = "data"\n', "", "data_dir: missing"),
    ],
)
def test_bad_node_config(committee: tuple[Path, Genesis], old: str, new: str, message: str) -> None:
    out = committee[0]
    text = (out / "node0" / "config.toml").read_text()
    assert old in text
    path = out / "node0" / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_node_config(path)


def test_ipv6_listen_address() -> None:
    assert HostPort.parse("[::1]:7000") == HostPort("::1", 7000)
    assert str(HostPort("::1", 7000)) == "[::1]:7000"
    assert str(HostPort.parse("example.org:1")) == "example.org:1"


def test_setup_refuses_keys_that_genesis_does_not_list(
    committee: tuple[Path, Genesis], tmp_path: Path
) -> None:
    out, _ = committee
    config = load_node_config(out / "node1" / "config.toml")
    other = write_node_keys(NodeKeys.generate("node1"), tmp_path / "keys")
    for field, path, message in (
        ("identity_key", other.identity, "is not node1's ed25519_pubkey"),
        ("settlement_key", other.settlement, "is not node1's settlement_address"),
    ):
        changed = tmp_path / f"{field}.toml"
        data = config.to_toml(relative_to=tmp_path)
        data[field] = str(path)
        write_toml(changed, data)
        with pytest.raises(KeyFileError, match=message):
            load_node_setup(changed)
    unknown = tmp_path / "unknown.toml"
    data = config.to_toml(relative_to=tmp_path)
    data["name"] = "node9"
    write_toml(unknown, data)
    with pytest.raises(ConfigError, match="no member named 'node9'"):
        load_node_setup(unknown)


def test_peer_address_overrides_roundtrip_and_validation(tmp_path: Path) -> None:
    from node.config import ConfigError, HostPort, load_node_config

    committee_init(tmp_path / "c", 2)
    path = tmp_path / "c" / "node0" / "config.toml"
    config = load_node_config(path)
    assert config.peer_addresses == {}
    from dataclasses import replace

    replace(config, peer_addresses={"node1": HostPort("127.0.0.1", 9999)}).write(path)
    assert load_node_config(path).peer_addresses == {"node1": HostPort("127.0.0.1", 9999)}
    path.write_text(path.read_text().replace("127.0.0.1:9999", "nonsense"))
    with pytest.raises(ConfigError, match="peer_addresses"):
        load_node_config(path)


@pytest.mark.parametrize(
    ("cores", "members", "threads"), [(2, 4, 0), (2, 1, 2), (3, 2, 0), (8, 4, 2), (16, 1, 16)]
)
def test_signature_threads_share_the_host_cores_among_its_members(
    monkeypatch: pytest.MonkeyPatch, cores: int, members: int, threads: int
) -> None:
    import node.config

    monkeypatch.setattr(node.config, "usable_cores", lambda: cores)
    assert node.config.verify_threads_for(members) == threads


def test_committee_init_writes_the_signature_threads_and_they_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import node.config

    monkeypatch.setattr(node.config, "usable_cores", lambda: 8)
    committee_init(tmp_path / "c", 4)
    path = tmp_path / "c" / "node0" / "config.toml"
    assert load_node_config(path).verify_threads == 2  # 8 cores, 4 members on this host
    text = path.read_text()
    assert "verify_threads = 2" in text
    path.write_text(text.replace("verify_threads = 2", ""))
    assert load_node_config(path).verify_threads is None  # absent: the node decides
    for bad in ("-1", "65", '"two"'):
        path.write_text(text.replace("verify_threads = 2", f"verify_threads = {bad}"))
        with pytest.raises(ConfigError, match=r"verify_threads: must be an integer in 0\.\.64"):
            load_node_config(path)
