"""A member's clock against the committee's (node/runtime/clock.py; issue 17): measured
from peers' signed block timestamps, corrected, and reported when off."""

from __future__ import annotations

from pathlib import Path

import trio

from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.procs import free_base_port
from node.runtime import Node, NodeOptions
from node.runtime.clock import CommitteeClock
from node.store.storage import open_storage
from tests.node.cluster import place, trader_key

DAY_MS = 24 * 3600 * 1000


def _clock(local: list[int]) -> CommitteeClock:
    return CommitteeClock(
        lambda: local[0], me=0, quorum=3, alarm_ms=2_000, max_correction_ms=7 * DAY_MS
    )


def test_the_median_of_2f_plus_1_readings_corrects_the_clock() -> None:
    local = [1_000_000]
    clock = _clock(local)
    clock.observe(1, 1_005_000, None)
    assert clock.offset_ms == 0  # one reading: not enough to doubt our own clock
    clock.observe(2, 1_005_010, None)
    assert 4_000 < clock.offset_ms <= 5_010 and clock.skewed()
    assert clock.now_ms() == local[0] + clock.offset_ms


def test_f_byzantine_readings_cannot_move_it_past_the_honest_ones() -> None:
    local = [1_000_000]
    clock = _clock(local)
    clock.observe(1, 1_000_000 + 3 * DAY_MS, None)  # a liar
    clock.observe(2, 1_000_020, None)
    clock.observe(3, 1_000_010, None)
    assert 0 <= clock.offset_ms <= 20 and not clock.skewed()


def test_a_timestamp_forced_by_its_parent_is_no_reading() -> None:
    clock = _clock([1_000_000])
    clock.observe(1, 1_500_001, 1_500_000)
    clock.observe(2, 1_500_001, 1_500_000)
    clock.observe(3, 1_500_001, 1_500_000)
    assert clock.offset_ms == 0


async def _committee(tmp_path: Path, skews: list[int]) -> list[Node]:
    committee_init(
        tmp_path, 4, base_port=free_base_port(4), consensus=ConsensusParams(round_timeout_ms=300)
    )
    nodes = []
    for i, skew in enumerate(skews):
        setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
        storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
        nodes.append(
            Node(setup, storage, NodeOptions(idle_block_interval_ms=40, clock_skew_ms=skew))
        )
    return nodes


async def test_a_slow_member_votes_on_committee_time_and_says_it_is_off(tmp_path: Path) -> None:
    """5 s slow, a member used to refuse every proposal as "from the future" and send no
    vote at all, while reporting ready. Now it measures, corrects, keeps voting and its
    readiness says why it is not ready."""
    nodes = await _committee(tmp_path, [0, 0, 0, -5_000])
    slow = nodes[3]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(30):
            while not slow.clock.skewed() or slow.exec_height < 3:
                await trio.sleep(0.05)
        votes = slow.counters["votes_sent"]
        with trio.fail_after(30):
            while slow.counters["votes_sent"] < votes + 5:
                await trio.sleep(0.05)
        assert 4_000 <= slow.clock.offset_ms <= 6_000
        assert not slow.is_ready() and slow.status()["phase"] == "clock_skew"
        assert all(n.is_ready() for n in nodes[:3])
        nursery.cancel_scope.cancel()


async def test_a_member_days_fast_still_admits_intents(tmp_path: Path) -> None:
    nodes = await _committee(tmp_path, [0, 0, 0, 3 * DAY_MS])
    fast = nodes[3]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(30):
            while not fast.clock.skewed():
                await trio.sleep(0.05)
        intent = place(trader_key(1), fast.domain)  # nonce: the trader's (true) time
        result = await fast.submit([intent], wait=True, timeout_s=20)
        assert result[0].status in ("committed", "rejected") and result[0].height, result
        nursery.cancel_scope.cancel()


def test_members_that_read_each_others_corrected_clocks_do_not_drift() -> None:
    """Each leader stamps its corrected clock, and each sample arrives `delay` late. With
    every member correcting by the median, the delays compounded (about 1 ms a block, the
    alarm after ~1,800 blocks); within the dead band nobody corrects, so nothing moves."""
    delay, n = 2, 4
    local = [1_000_000]
    clocks = [
        CommitteeClock(
            lambda: local[0], me=i, quorum=3, alarm_ms=2_000, max_correction_ms=7 * DAY_MS
        )
        for i in range(n)
    ]
    for block in range(5_000):
        leader = block % n
        stamp = clocks[leader].now_ms()
        local[0] += delay
        for i, clock in enumerate(clocks):
            clock.observe(leader, stamp, None)
            assert i == leader or abs(clock.offset_ms) <= delay
    assert not any(c.skewed() for c in clocks)


def test_a_slow_member_corrects_while_the_others_stay_on_their_own_clocks() -> None:
    local = [1_000_000]
    slow = _clock(local)  # member 0, 5 s behind the other three
    for block in range(300):
        leader = 1 + block % 3
        slow.observe(leader, local[0] + 5_000, None)
        local[0] += 3
    assert 4_990 <= slow.offset_ms <= 5_000 and slow.skewed()


def test_a_silent_members_reading_expires() -> None:
    local = [1_000_000]
    clock = _clock(local)
    clock.observe(1, local[0] + 5_000, None)
    clock.observe(2, local[0] + 5_000, None)
    assert clock.skewed()
    local[0] += 61_000  # both went quiet; one speaks again, on our time
    clock.observe(3, local[0], None)
    assert clock.offset_ms == 0 and not clock.skewed()
