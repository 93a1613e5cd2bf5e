"""`node.chain.localchain`: anvil up, contracts deployed, genesis rewritten, accounts funded."""

from __future__ import annotations

import time
from pathlib import Path

from contracts.settlement import ETH, Settlement, balance_of
from contracts.signing import committee_hash, sorted_members
from node.chain.localchain import (
    MEMBER_ETH_WEI,
    TRADER_ETH_WEI,
    TRADER_TOKENS,
    ChainSetup,
    connect,
    deposit,
    stop,
    up,
)
from node.genesis import committee_init, load_genesis
from node.procs import pid_alive


def test_up_deploys_rewrites_genesis_funds_and_stop_kills_anvil(tmp_path: Path) -> None:
    folder = tmp_path / "net"
    before = committee_init(folder, 4, base_port=17_000)
    genesis_path = folder / "genesis.toml"
    setup = up(folder, genesis_path, block_time_s=1, traders=2)
    try:
        assert setup.anvil_pid is not None and pid_alive(setup.anvil_pid)
        assert ChainSetup.load(folder) == setup
        w3 = connect(setup.url)
        genesis = load_genesis(genesis_path)
        assert genesis.settlement_contract == setup.settlement
        assert genesis.genesis_hash() != before.genesis_hash()
        assert genesis.chain_id == setup.chain_id == w3.eth.chain_id
        s = Settlement(w3, setup.settlement)
        state = s.state()
        assert state.threshold == genesis.quorum == 3
        assert s.tokens() == [a.token for a in genesis.exchange.assets]
        for asset in genesis.exchange.assets:
            assert setup.tokens[asset.symbol] == asset.token
            assert s.token_unit(asset.token) == asset.unit
            if asset.token != ETH:
                assert w3.eth.get_code(w3.to_checksum_address(asset.token))
        for m in genesis.members:
            assert balance_of(w3, ETH, m.settlement_address) == MEMBER_ETH_WEI
        members = sorted_members(m.settlement_address for m in genesis.members)
        assert s.state().committee_hash == committee_hash(members)
        usdc = setup.tokens["USDC"]
        for t in setup.traders:
            assert balance_of(w3, ETH, t.address) == TRADER_ETH_WEI
            assert balance_of(w3, usdc, t.address) == TRADER_TOKENS * 10**6
        trader = setup.traders[0]
        assert deposit(setup.url, trader.key, ETH, 10**18, contract=setup.settlement) == 1
        assert deposit(setup.url, trader.key, usdc, 5 * 10**6, contract=setup.settlement) == 2
        assert s.deposit_record(2) == (trader.address, usdc, 5 * 10**6)
        # Interval mining is on: blocks keep coming on an idle chain (confirmations).
        height = w3.eth.block_number
        deadline = time.monotonic() + 5
        while w3.eth.block_number == height and time.monotonic() < deadline:
            time.sleep(0.1)
        assert w3.eth.block_number > height
        assert "traders" in setup.summary()
    finally:
        assert setup.anvil_pid is not None
        stop(setup.anvil_pid)
    assert not pid_alive(setup.anvil_pid)
