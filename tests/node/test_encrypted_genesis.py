"""The committee key at `committee init` (docs/PROTOCOL.md §10.8): genesis [fairness],
each member's share file, and the checks when a node loads them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node.config import ConfigError
from node.fairness.group import base_mul, encode_point
from node.genesis import committee_init, load_genesis, load_node_setup
from node.keys import KeyFileError


def test_init_writes_the_key_into_genesis_and_each_share_into_a_private_file(
    tmp_path: Path,
) -> None:
    genesis = committee_init(tmp_path, 4, base_port=17_100)
    assert genesis.fairness is not None
    assert load_genesis(tmp_path / "genesis.toml") == genesis
    assert "[fairness]" in (tmp_path / "genesis.toml").read_text()
    key = genesis.fairness.key
    assert (key.threshold, key.members, genesis.fairness.epoch) == (2, 4, 0)
    for i in range(4):
        path = tmp_path / f"node{i}" / "keys" / f"node{i}.fairness.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
        assert setup.config.fairness_key == path.resolve()
        share = setup.fairness_share
        assert share is not None and share.index == i + 1
        assert encode_point(base_mul(share.secret)) == key.verification_shares[i]


def test_a_node_refuses_another_members_share(tmp_path: Path) -> None:
    committee_init(tmp_path, 4, base_port=17_200)
    mine = tmp_path / "node0" / "keys" / "node0.fairness.key"
    other = tmp_path / "node1" / "keys" / "node1.fairness.key"
    mine.write_bytes(other.read_bytes())
    with pytest.raises(KeyFileError, match="share"):
        load_node_setup(tmp_path / "node0" / "config.toml")


def test_no_in_process_key_ceremony_outside_the_development_chain(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="development chain"):
        committee_init(tmp_path / "a", 4, base_port=17_300, chain_id=1, encryption=True)
    genesis = committee_init(tmp_path / "b", 4, base_port=17_300, chain_id=1)
    assert genesis.fairness is None
    assert load_node_setup(tmp_path / "b" / "node0" / "config.toml").fairness_share is None
