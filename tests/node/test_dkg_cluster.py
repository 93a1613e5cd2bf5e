"""The committee key made by the members themselves (docs/PROTOCOL.md §10.9): four
members of a non-development chain, in one trio process over real loopback sockets, run
epoch 0's DKG over their committed log at start, reach the same key at the same height,
each store their own share, and then execute encrypted intents; a restarted member gets
the key back from its log and its stored share."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import trio

from node.fairness.committee import local_dkg
from node.fairness.dkg import member_key_from_settlement, member_public_key
from node.fairness.group import base_mul, encode_point
from node.fairness.keying import KeyingParams
from node.fairness.threshold import ThresholdPublicKey
from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.intents import address_of_private_key, place_action, sign_intent
from node.procs import free_base_port
from node.runtime import Node, NodeOptions
from node.store.storage import open_storage
from seqnet_sdk.encrypted import encrypt_intent
from tests.node.cluster import _nonces, trader_key

CHAIN_ID = 4242  # not the development chain: no dealer, the members run the DKG
# Snapshots every 7 blocks: some fall inside a DKG run, so a member snapshot carries a
# running run and a restart restores the key from a snapshot plus the log above it.
FAST = NodeOptions(idle_block_interval_ms=40, snapshot_interval_blocks=7)


def make_node(tmp_path: Path, i: int, options: NodeOptions = FAST) -> Node:
    setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
    storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
    return Node(setup, storage, options)


async def wait_ready(nodes: list[Node]) -> None:
    with trio.fail_after(120):  # a failsafe, not a measured bound
        while any((n.fairness_key() or {}).get("status") != "ready" for n in nodes):
            await trio.sleep(0.02)


def seal(node: Node, i: int, committee_key: ThresholdPublicKey, epoch: int) -> bytes:
    key = trader_key(i)
    intent = sign_intent(
        key,
        address_of_private_key(key),
        next(_nonces),
        place_action(0, "buy" if i % 2 else "sell", 3_000_000, 5_000_000),
        node.domain,
    )
    return encrypt_intent(intent, committee_key, epoch, node.domain, key)


def dev_dkg_committee(tmp_path: Path, phase_blocks: int) -> None:
    """A 4-member committee of the development chain whose genesis has a [dkg] table
    instead of the dealt key: Byzantine test modes run on chain 31337 only."""
    genesis = committee_init(
        tmp_path,
        4,
        base_port=free_base_port(4),
        encryption=False,
        consensus=ConsensusParams(round_timeout_ms=300, checkpoint_interval_blocks=5),
    )
    secrets = [
        load_node_setup(tmp_path / f"node{i}" / "config.toml").keys.settlement.secret
        for i in range(4)
    ]
    keys = tuple(member_public_key(member_key_from_settlement(s)) for s in secrets)
    dataclasses.replace(genesis, dkg=KeyingParams(genesis.chain_id, keys, phase_blocks)).write(
        tmp_path / "genesis.toml"
    )


async def start_and_agree(nursery: trio.Nursery, nodes: list[Node]) -> dict[str, Any]:
    """Start the members, wait until the key is ready on all, and return the key they all
    report (GET /v1/fairness/key's body)."""
    for node in nodes:
        await nursery.start(node.run)
    await wait_ready(nodes)
    keys = [n.fairness_key() for n in nodes]
    assert all(k == keys[0] for k in keys), keys
    assert keys[0] is not None
    return keys[0]


def assert_share_fits(node: Node, index: int) -> None:
    """The member's share in use is its share of the current key: xᵢ·G = Xᵢ."""
    fairness = node.executor.fairness()
    assert fairness is not None and node.decryption is not None
    share = node.decryption._share
    assert share is not None
    assert encode_point(base_mul(share.secret)) == fairness.key.verification_shares[index]


async def seal_and_submit(nodes: list[Node], count: int) -> list[bytes]:
    fairness = nodes[0].executor.fairness()
    assert fairness is not None
    ids = []
    for i in range(count):
        envelope = seal(nodes[0], i, fairness.key, fairness.epoch)
        (result,) = await nodes[i % len(nodes)].submit_encrypted([envelope], True, 50)
        # Opened and run by the engine (the trader has no funds): not `undecryptable`.
        assert result.code == "insufficient_balance" and result.height is not None, result
        ids.append(result.intent_id)
    return ids


async def test_members_run_the_dkg_at_start_and_execute_encrypted_intents(
    tmp_path: Path,
) -> None:
    genesis = committee_init(
        tmp_path,
        4,
        base_port=free_base_port(4),
        chain_id=CHAIN_ID,
        consensus=ConsensusParams(round_timeout_ms=300, checkpoint_interval_blocks=5),
    )
    assert genesis.fairness is None and genesis.dkg is not None
    assert "[dkg]" in (tmp_path / "genesis.toml").read_text()
    nodes = [make_node(tmp_path, i) for i in range(4)]
    assert all(n.fairness_key() == nodes[0].fairness_key() for n in nodes)
    assert nodes[0].fairness_key()["status"] == "pending"  # type: ignore[index]
    # Any well-formed envelope of epoch 0 (sealed to a stand-in key: none exists yet).
    stand_in, _ = local_dkg(31337, 0, [bytes([i]) * 32 for i in range(1, 5)], [bytes(32)] * 4)
    refused = await nodes[0].submit_encrypted([seal(nodes[0], 9, stand_in, 0)], False, 1)
    assert refused[0].code == "no_committee_key", refused
    async with trio.open_nursery() as nursery:
        key = await start_and_agree(nursery, nodes)
        assert key is not None and key["epoch"] == 0 and key["qualified"] == [1, 2, 3, 4]
        assert key["height"] == 2 * genesis.dkg.phase_blocks
        ids = await seal_and_submit(nodes, 4)
        with trio.fail_after(60):
            while any(n.outcomes.result(i) is None for n in nodes for i in ids):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    answers = {tuple((r.status, r.code) for r in map(n.outcomes.result, ids) if r) for n in nodes}
    assert answers == {(("rejected", "insufficient_balance"),) * 4}, answers  # opened and run
    for i, node in enumerate(nodes):
        fairness = node.executor.fairness()
        assert fairness is not None
        share = node.decryption.decryptor.public if node.decryption else None
        assert share == fairness.key
        path = node.setup.config.data_dir / "fairness" / "epoch-0.key"
        assert path.stat().st_mode & 0o777 == 0o600
        secret = int(path.read_text().split(":")[1], 16)
        assert encode_point(base_mul(secret)) == fairness.key.verification_shares[i]
        node.storage.close()
    # A restart replays the log into the same key and loads the stored share.
    again = make_node(tmp_path, 1)
    snapshot = again.storage.latest_snapshot()
    assert snapshot is not None and snapshot[0] >= 7  # restored from it, then the log
    assert again.fairness_key() == key
    assert again.decryption is not None and again.decryption._share is not None
    again.storage.close()


async def test_a_dealer_with_a_bad_share_is_disqualified_and_the_others_make_the_key(
    tmp_path: Path,
) -> None:
    """Byzantine test modes run on the development chain only, so this committee is a
    31337 one whose genesis gets a [dkg] table instead of the dealt key."""
    dev_dkg_committee(tmp_path, phase_blocks=12)
    bad = NodeOptions(idle_block_interval_ms=40, byzantine="bad-dealing")
    nodes = [make_node(tmp_path, i, bad if i == 1 else FAST) for i in range(4)]
    async with trio.open_nursery() as nursery:
        key = await start_and_agree(nursery, nodes)
        assert key is not None and key["qualified"] == [1, 3, 4], key  # member 2 is out
        ids = await seal_and_submit(nodes, 2)
        nursery.cancel_scope.cancel()
    assert len(ids) == 2
    for i, node in enumerate(nodes):  # every member, the bad dealer too, holds a share
        assert_share_fits(node, i)
        node.storage.close()


async def test_a_member_whose_entries_only_others_carry_deals_and_complains(
    tmp_path: Path,
) -> None:
    """Member 4 never carries its own DKG entries (test mode `relay-dkg-only`, as if it
    never led) and member 2 spoils member 4's share (`bad-dealing`). Member 4's dealing
    and its complaint against member 2 reach the log only relayed by the others
    (node/runtime/dkg_relay.py): member 4 is qualified, member 2 is not, and member 4
    holds a valid share. (Test modes run on the development chain only.)"""
    dev_dkg_committee(tmp_path, phase_blocks=12)
    options = {
        1: NodeOptions(idle_block_interval_ms=40, byzantine="bad-dealing"),
        3: NodeOptions(idle_block_interval_ms=40, byzantine="relay-dkg-only"),
    }
    nodes = [make_node(tmp_path, i, options.get(i, FAST)) for i in range(4)]
    async with trio.open_nursery() as nursery:
        key = await start_and_agree(nursery, nodes)
        assert key is not None and key["qualified"] == [1, 3, 4], key
        nursery.cancel_scope.cancel()
    assert nodes[3].counters["dkg_relay_sent"] > 0
    assert sum(n.counters["dkg_relay_kept"] for n in nodes[:3]) > 0
    assert_share_fits(nodes[3], 3)
    for node in nodes:
        node.storage.close()


async def test_rekey_interval_makes_a_new_key_and_the_old_one_opens_during_grace(
    tmp_path: Path,
) -> None:
    """Epoch 1's key replaces epoch 0's at height 60 + 2·6 = 72; for the 40 blocks of
    grace after it (73 … 112) an envelope sealed to epoch 0's key is still taken and
    opened; after them it is refused `wrong_epoch` (and would be `undecryptable`). When
    the next key (epoch 2) is ready, the first key's share file is deleted."""
    grace = 40
    committee_init(
        tmp_path,
        4,
        base_port=free_base_port(4),
        chain_id=CHAIN_ID,
        consensus=ConsensusParams(round_timeout_ms=300, checkpoint_interval_blocks=5),
        dkg_phase_blocks=6,
        rekey_interval_blocks=60,
        dkg_grace_blocks=grace,
    )
    assert "grace_blocks = 40" in (tmp_path / "genesis.toml").read_text()
    nodes = [make_node(tmp_path, i) for i in range(4)]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        await wait_ready(nodes)
        first = nodes[0].fairness_key()
        assert first is not None
        with trio.fail_after(120):  # a failsafe, not a measured bound
            while any((n.fairness_key() or {}).get("height", 0) <= 60 for n in nodes):
                await trio.sleep(0.02)
        second = nodes[0].fairness_key()
        assert second is not None and all(n.fairness_key() == second for n in nodes)
        assert second["epoch"] > first["epoch"] and second["key_id"] != first["key_id"]
        assert second["height"] == 72
        old_key = ThresholdPublicKey.decode(bytes.fromhex(first["committee_key"][2:]))
        # In the grace: sealed to the old key, taken, ordered and opened (then run).
        (late,) = await nodes[1].submit_encrypted(
            [seal(nodes[0], 6, old_key, first["epoch"])], True, 20
        )
        assert late.code == "insufficient_balance" and late.height is not None, late
        assert late.height <= second["height"] + grace
        ids = await seal_and_submit(nodes, 2)  # sealed to the new key: opened and run
        with trio.fail_after(120):
            while any(n.exec_height <= second["height"] + grace for n in nodes):
                await trio.sleep(0.02)
        stale = seal(nodes[0], 7, old_key, first["epoch"])
        (refused,) = await nodes[0].submit_encrypted([stale], False, 1)
        assert refused.code == "wrong_epoch", refused
        for node in nodes:  # the grace's key and the current one are kept
            for key in (first, second):
                path = node.setup.config.data_dir / "fairness" / f"epoch-{key['epoch']}.key"
                assert path.exists()
        # The next re-key (run from 120, ready at 132): the first key's share is deleted.
        with trio.fail_after(120):  # a failsafe, not a measured bound
            while any((n.fairness_key() or {}).get("height", 0) <= 120 for n in nodes):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert len(ids) == 2
    answers = {n.outcomes.result(late.intent_id) for n in nodes}
    assert len(answers) == 1, answers  # the same outcome everywhere
    third = nodes[0].fairness_key()
    assert third is not None and third["epoch"] > second["epoch"]
    for node in nodes:
        shares = node.setup.config.data_dir / "fairness"
        assert sorted(p.name for p in shares.iterdir()) == [
            f"epoch-{key['epoch']}.key" for key in (second, third)
        ]
        node.storage.close()


async def _run_member(
    node: Node,
    box: list[trio.CancelScope],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope() as scope:
        box.append(scope)
        await node.run(task_status=task_status)


async def test_a_wiped_member_restored_by_snapshot_sync_recovers_its_share(
    tmp_path: Path,
) -> None:
    """Member 4's data directory is wiped after the DKG; it comes back by snapshot sync
    (the others keep only 8 blocks of log below their snapshots), so it has the key
    record but not the run's dealings. It asks peers for them (PROTOCOL.md §10.10),
    stores its share, and its shares count: with member 1 stopped and member 2
    withholding, member 3's and member 4's shares are the t = 2 an envelope needs.
    (A development-chain committee with a [dkg] table: test faults run there only.)"""
    dev_dkg_committee(tmp_path, phase_blocks=6)
    options = NodeOptions(
        idle_block_interval_ms=40,
        snapshot_interval_blocks=5,
        snapshot_sync_gap_blocks=10,
        history_blocks=8,
    )
    withholding = dataclasses.replace(options, byzantine="withhold-shares")
    nodes = [make_node(tmp_path, i, withholding if i == 1 else options) for i in range(4)]
    async with trio.open_nursery() as nursery:
        scopes: list[list[trio.CancelScope]] = [[] for _ in nodes]
        for node, box in zip(nodes, scopes, strict=True):
            await nursery.start(_run_member, node, box)
        await wait_ready(nodes)
        key = nodes[0].fairness_key()
        assert key is not None and key["qualified"] == [1, 2, 3, 4]
        scopes[3][-1].cancel()
        await trio.sleep(0.1)
        nodes[3].storage.close()
        data_dir = nodes[3].setup.config.data_dir
        shutil.rmtree(data_dir)
        with trio.fail_after(120):  # the others' logs no longer reach the DKG's blocks
            while min(n.storage.first_committed_height() for n in nodes[:3]) <= key["height"]:
                await trio.sleep(0.05)
        nodes[3] = make_node(tmp_path, 3, options)
        assert nodes[3].fairness_key()["status"] == "pending"  # type: ignore[index]
        await nursery.start(_run_member, nodes[3], scopes[3])
        with trio.fail_after(60):
            while nodes[3].counters.get("share_recovery_recovered", 0) == 0:
                await trio.sleep(0.05)
        assert nodes[3].counters["snapshot_syncs"] == 1
        assert nodes[3].fairness_key() == nodes[0].fairness_key()
        await _fourth_members_share_counts(nodes, scopes)
        nursery.cancel_scope.cancel()
    for node in nodes:
        node.storage.close()


async def test_a_member_a_qualified_dealer_cheated_repairs_its_share(tmp_path: Path) -> None:
    """Member 2 deals member 4 a spoiled share (test mode `bad-dealing`) and member 4,
    as if it had been away, does not complain: member 2 stays qualified and member 4
    derives no share. Recovery (§10.10) gets it the authentic dealings, which do not open
    for it; it then repairs its share from two helpers (PROTOCOL.md §10.11) and its shares
    count: with member 1 stopped and member 2 withholding, member 3's and member 4's shares
    are the t = 2 an envelope needs. (A development-chain committee with a [dkg] table:
    test faults run there only.)"""
    dev_dkg_committee(tmp_path, phase_blocks=6)
    options = NodeOptions(idle_block_interval_ms=40)
    cheater = dataclasses.replace(options, byzantine="bad-dealing,withhold-shares")
    nodes = [make_node(tmp_path, i, cheater if i == 1 else options) for i in range(4)]
    away = nodes[3].executor.member_keying
    assert away is not None
    away._check_dealings = lambda run: None  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        scopes: list[list[trio.CancelScope]] = [[] for _ in nodes]
        for node, box in zip(nodes, scopes, strict=True):
            await nursery.start(_run_member, node, box)
        await wait_ready(nodes)
        key = nodes[0].fairness_key()
        assert key is not None and key["qualified"] == [1, 2, 3, 4], key  # 2 stays in
        with trio.fail_after(60):
            while nodes[3].counters.get("share_repair_repaired", 0) == 0:
                await trio.sleep(0.05)
        assert nodes[3].counters["share_recovery_unopened"] >= 1
        assert nodes[3].counters["share_recovery_recovered"] == 0
        assert sum(n.counters.get("share_repair_helped", 0) for n in nodes[:3]) >= 2
        assert all(n.counters.get("share_repair_refused", 0) == 0 for n in nodes)
        await _fourth_members_share_counts(nodes, scopes)
        nursery.cancel_scope.cancel()
    for node in nodes:
        node.storage.close()


async def _fourth_members_share_counts(
    nodes: list[Node], scopes: list[list[trio.CancelScope]]
) -> None:
    """Member 4's stored epoch-0 share (0600) is its share of the key and its decryption
    room uses it; then member 1 stops and member 2 withholds, so only member 3's and
    member 4's shares remain: encrypted intents still execute, with member 4's shares."""
    path = nodes[3].setup.config.data_dir / "fairness" / "epoch-0.key"
    assert path.stat().st_mode & 0o777 == 0o600
    secret = int(path.read_text().split(":")[1], 16)
    fairness = nodes[3].executor.fairness()
    assert fairness is not None
    assert encode_point(base_mul(secret)) == fairness.key.verification_shares[3]
    room = nodes[3].decryption
    assert room is not None and room._share is not None and room._share.secret == secret
    scopes[0][-1].cancel()
    ids = await seal_and_submit(nodes[1:], 2)
    with trio.fail_after(60):
        while any(n.outcomes.result(i) is None for n in nodes[1:] for i in ids):
            await trio.sleep(0.02)
    assert nodes[3].counters["decryption_shares_sent"] > 0
    assert nodes[1].counters["decryption_shares_sent"] == 0
