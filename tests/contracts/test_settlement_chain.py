"""The `Chain` interface behaves the same on py-evm and anvil (time travel, snapshots)."""

from __future__ import annotations

from contracts.signing import address_of
from tests.contracts.settlement_world import World


def test_advance_time_and_snapshot(world: World) -> None:
    chain, s = world.chain, world.s
    before = chain.timestamp()
    chain.advance_time(1000)
    deposit = s.deposit_eth(world.users[0], 10**18)
    block = chain.w3.eth.get_block(deposit.block_number)
    assert block["timestamp"] >= before + 1000

    snap = chain.snapshot()
    s.deposit_eth(world.users[0], 10**18)
    assert s.state().deposit_count == 2
    chain.revert(snap)
    assert s.state().deposit_count == 1
    # Transactions still go through after a revert (nonces are read from the chain).
    s.deposit_eth(world.users[0], 10**18)
    assert s.deposit_record(2) == (address_of(world.users[0]), bytes(20), 10**18)
