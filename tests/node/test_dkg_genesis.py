"""Genesis [dkg] (docs/PROTOCOL.md §10.9): written by `committee init` on any chain but
31337, parsed strictly, checked against each member's own key; a dealt key refused off
the development chain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node.config import ConfigError
from node.fairness.dkg import member_key_from_settlement, member_public_key
from node.genesis import committee_init, load_genesis, load_node_setup
from node.keys import KeyFileError


def test_committee_init_off_the_dev_chain_writes_dkg_and_no_key(tmp_path: Path) -> None:
    genesis = committee_init(tmp_path, 4, base_port=17_400, chain_id=4242)
    assert genesis.fairness is None and genesis.dkg is not None
    assert (genesis.dkg.phase_blocks, genesis.dkg.rekey_interval_blocks) == (12, 0)
    assert load_genesis(tmp_path / "genesis.toml") == genesis
    for i in range(4):
        setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
        mine = member_public_key(member_key_from_settlement(setup.keys.settlement.secret))
        assert genesis.dkg.member_keys[i] == mine
        assert setup.fairness_share is None and setup.config.fairness_key is None
    assert not list(tmp_path.glob("node*/keys/*.fairness.key"))


def test_a_member_whose_dkg_key_genesis_does_not_list_refuses_to_start(tmp_path: Path) -> None:
    genesis = committee_init(tmp_path, 4, base_port=17_400, chain_id=4242)
    assert genesis.dkg is not None
    keys = list(genesis.dkg.member_keys)
    keys[0], keys[1] = keys[1], keys[0]
    swapped = dataclasses.replace(genesis.dkg, member_keys=tuple(keys))
    dataclasses.replace(genesis, dkg=swapped).write(tmp_path / "genesis.toml")
    with pytest.raises(KeyFileError, match="DKG key"):
        load_node_setup(tmp_path / "node0" / "config.toml")


def test_dealt_key_off_the_dev_chain_and_both_tables_are_refused(tmp_path: Path) -> None:
    dev = committee_init(tmp_path / "dev", 4, base_port=17_400)
    assert dev.fairness is not None
    text = (tmp_path / "dev" / "genesis.toml").read_text()
    moved = tmp_path / "moved.toml"
    moved.write_text(text.replace("chain_id = 31337", "chain_id = 4242", 1))
    with pytest.raises(ConfigError, match="development chain"):
        load_genesis(moved)
    other = committee_init(tmp_path / "other", 4, base_port=17_500, chain_id=4242)
    dkg_table = (tmp_path / "other" / "genesis.toml").read_text().split("[dkg]")[1]
    both = tmp_path / "both.toml"
    both.write_text(text + "\n[dkg]" + dkg_table)
    with pytest.raises(ConfigError, match="exclude"):
        load_genesis(both)
    assert other.dkg is not None


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("phase_blocks = 12", "phase_blocks = 1", "phase_blocks"),
        ("rekey_interval_blocks = 0", "rekey_interval_blocks = 24", "two phases"),
        ("rekey_interval_blocks = 0", "rekey_interval_blocks = 0\nextra = 1", "unknown key"),
        ('member_keys = [\n    "0x0', 'member_keys = [\n    "0x1', "dkg: member 1's key"),
        ("rekey_interval_blocks = 0", "rekey_interval_blocks = 0\ngrace_blocks = -1", "grace"),
        ("rekey_interval_blocks = 0", "rekey_interval_blocks = 0\ngrace_blocks = true", "grace"),
    ],
)
def test_dkg_table_is_parsed_strictly(tmp_path: Path, old: str, new: str, match: str) -> None:
    committee_init(tmp_path / "c", 4, base_port=17_400, chain_id=4242)
    text = (tmp_path / "c" / "genesis.toml").read_text()
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=match):
        load_genesis(bad)


def test_grace_blocks_is_written_only_when_set(tmp_path: Path) -> None:
    """Absent, the grace is one phase and the table (so the genesis hash) is as before;
    set, it is written and read back."""
    plain = committee_init(tmp_path / "a", 4, base_port=17_400, chain_id=4242)
    assert plain.dkg is not None and plain.dkg.grace_blocks is None
    assert plain.dkg.grace == plain.dkg.phase_blocks
    assert "grace_blocks" not in (tmp_path / "a" / "genesis.toml").read_text()
    graced = committee_init(tmp_path / "b", 4, base_port=17_500, chain_id=4242, dkg_grace_blocks=0)
    assert graced.dkg is not None and graced.dkg.grace == 0
    assert "grace_blocks = 0" in (tmp_path / "b" / "genesis.toml").read_text()
    assert load_genesis(tmp_path / "b" / "genesis.toml") == graced
