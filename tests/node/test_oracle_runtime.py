"""The oracle in running members (4 in process, real TCP): every member's feeder signs
observations, leaders put them in blocks, voters check them, and every member's engine
reaches the same fresh index for BTC-PERP from 2f + 1 members; a member whose source
reports a wild price cannot move it; a block carrying a forged observation gets no vote."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import trio

from consensus.crypto import Ed25519Signer
from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.oracle.observation import sign_observation
from node.procs import free_base_port
from node.runtime import Node, NodeOptions
from node.store.storage import open_storage

BTC_PERP = 2
FAST = NodeOptions(idle_block_interval_ms=20, join_wait_s=0.2)


class Wild:
    """A dishonest member's source: ten times the price."""

    async def prices(self, now_ms: int) -> dict[str, Decimal]:
        return {"BTC-PERP": Decimal(970_000)}


def make_perp_nodes(tmp_path: Path, n: int = 4) -> list[Node]:
    committee_init(
        tmp_path,
        n,
        base_port=free_base_port(n),
        consensus=ConsensusParams(round_timeout_ms=300),
        perps=True,
    )
    nodes = []
    for i in range(n):
        setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
        oracle = dataclasses.replace(setup.config.oracle, interval_ms=200)
        setup = dataclasses.replace(setup, config=dataclasses.replace(setup.config, oracle=oracle))
        storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
        nodes.append(Node(setup, storage, FAST))
    return nodes


def index(node: Node) -> int:
    perps = node.engine.perps
    assert perps is not None
    market = perps.markets[BTC_PERP]
    return market.index if market.fresh else 0


async def test_members_agree_on_an_index_a_wild_member_cannot_move(tmp_path: Path) -> None:
    nodes = make_perp_nodes(tmp_path)
    wild = nodes[3]
    assert wild.oracle.feeder is not None
    wild.oracle.feeder._source = Wild()  # a member lying about the price
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(30):
            while not all(index(n) for n in nodes):
                await trio.sleep(0.05)
            top = max(n.exec_height for n in nodes)
            while min(n.exec_height for n in nodes) < top:
                await trio.sleep(0.05)
        # ~97,000 USDC per BTC: 9,700,000 micro-USDC a lot (970,000 ticks of 10) ± the
        # simulated swing; the wild member says ten times that
        prices = {index(n) for n in nodes}
        assert all(9_000_000 < p < 10_500_000 for p in prices), prices
        for node in nodes:
            status = node.status()["oracle"]
            assert status["enabled"] and status["observations"] > 0
        # The wild member's observations were committed all the same (it is a member):
        # the median of 2f + 1 fresh members left them out.
        assert wild.oracle.status()["observations"] > 0
        nursery.cancel_scope.cancel()


async def test_a_proposal_with_a_forged_observation_gets_no_vote(tmp_path: Path) -> None:
    nodes = make_perp_nodes(tmp_path)
    honest = nodes[0]
    chain = honest.genesis_hash
    now = honest.now_ms()
    forged = sign_observation(Ed25519Signer(b"\x07" * 32), chain, 1, now, {BTC_PERP: 5})
    ok = sign_observation(honest.signer, chain, 0, now, {BTC_PERP: 970_000})
    assert honest.oracle.check_block((ok.entry(),), now) is None
    assert "bad signature" in (honest.oracle.check_block((forged.entry(),), now) or "")
    stale = sign_observation(honest.signer, chain, 0, now - 60_000, {BTC_PERP: 970_000})
    assert "more than" in (honest.oracle.check_block((stale.entry(),), now) or "")
    for node in nodes:
        node.storage.close()


async def test_a_perp_action_signed_by_a_trader_commits(tmp_path: Path) -> None:
    """set_leverage travels the whole path: signed, admitted, ordered, executed."""
    from node.intents import address_of_private_key, sign_intent

    (node,) = make_perp_nodes(tmp_path, 1)
    key = (0xBEEF).to_bytes(32, "big")
    account = address_of_private_key(key)
    action = {"type": "set_leverage", "market": BTC_PERP, "leverage": 3, "isolated": True}
    too_high = {**action, "leverage": 50}
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        now = node.now_ms()
        intents = [
            sign_intent(key, account, now, action, node.domain),
            sign_intent(key, account, now + 1, too_high, node.domain),
        ]
        with trio.fail_after(20):
            ok, refused = await node.submit(intents, wait=True, timeout_s=10)
        assert ok.status == "committed", ok
        assert (refused.status, refused.code) == ("rejected", "bad_leverage"), refused
        nursery.cancel_scope.cancel()


class FixedVols:
    """A vol source that says the same vol for every series."""

    def __init__(self, vol: str, symbols: list[str]) -> None:
        self.vols = {s: Decimal(vol) for s in symbols}

    async def prices(self, now_ms: int) -> dict[str, Decimal]:
        return dict(self.vols)


async def test_members_publish_vols_and_agree_on_the_committee_vol(tmp_path: Path) -> None:
    """Every member's feeder signs vol observations (tag 0x06) beside its prices; leaders
    carry them, voters check them, and every engine reaches the committee vol of 2f + 1
    members: a member publishing a wild vol cannot move it."""
    from node.oracle.feeder import VolFeed

    nodes = make_perp_nodes(tmp_path)
    for i, node in enumerate(nodes):
        feeder = node.oracle.feeder
        assert feeder is not None and feeder._vols is not None and node.oracle.vols_enabled
        symbols = list(feeder._vols.to_vol_e9)
        vol = "5" if i == 3 else ("0.7", "0.75", "0.75")[i]  # member 3 is wild
        feeder._vols = VolFeed(FixedVols(vol, symbols), feeder._vols.to_vol_e9)

    def committee_vols(node: Node) -> set[int]:
        options = node.engine.options
        assert options is not None
        return {s.committee_vol for s in options.series.values()}

    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(30):
            # The median of any 3 or all 4 of 0.7, 0.75, 0.75 and 5 is 0.75.
            while not all(committee_vols(n) == {750_000_000} for n in nodes):
                await trio.sleep(0.05)
        for node in nodes:
            status = node.status()["oracle"]["vols"]
            assert status["enabled"] and status["observations"] > 0
        nursery.cancel_scope.cancel()
