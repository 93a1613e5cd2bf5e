"""The escape hatch with a perpetual position open, on anvil, with a 4-member committee of
real processes running the simulated oracle: two traders open opposite BTC-PERP positions,
checkpoints land while the oracle moves the mark, the committee stops, anyone freezes the
contract, and every USDC holder exits with its committed exit value (collateral plus
unrealized PnL at the checkpoint's mark, docs/MATCHING.md "State root and exit values").
The exits pay out exactly what the contract holds: nothing left, nothing short."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.settlement import Settlement, balance_of
from matching.merkle import process_proof
from node.chain.localchain import ChainSetup, connect, deposit
from node.genesis import INSURANCE_ACCOUNT, ConsensusParams, load_genesis
from node.intents import place_action
from node.localnet import down, pid_alive, stop_pid, up
from node.procs import free_base_port
from tests.integration.test_settlement_e2e import balance, get, post
from tests.node.cluster import wait_for

pytestmark = pytest.mark.integration

BTC_PERP = 2
USDC = 1  # asset index: the perp market's collateral
LOTS = 100  # 0.01 BTC: sizes count satoshi, one lot is 10**4 of them
DEPOSIT = 10_000 * 10**6  # 10,000 USDC each
PRICE = 9_700_000  # micro-USDC per lot: 97,000 USDC per BTC, where the simulated feed starts


def test_freeze_and_exit_with_a_perp_position_open(tmp_path: Path) -> None:
    params = ConsensusParams(round_timeout_ms=1000, checkpoint_interval_blocks=10)
    net = up(tmp_path / "net", 4, free_base_port(4), 90, chain=True, consensus=params, perps=True)
    folder = Path(net.folder)
    chain = ChainSetup.load(folder)
    try:
        genesis = load_genesis(folder / "genesis.toml")
        domain = genesis.domain()
        usdc = chain.tokens["USDC"]
        alice, bob = chain.traders[0], chain.traders[1]
        w3 = connect(chain.url)
        settlement = Settlement(w3, chain.settlement)
        for trader in (alice, bob):
            deposit(chain.url, trader.key, usdc, DEPOSIT, contract=chain.settlement)
        for trader in (alice, bob):
            wait_for(
                lambda t=trader: balance(net, t.address, "USDC") == DEPOSIT, what="USDC deposit"
            )

        # Alice rests a buy, Bob sells into it. Until the oracle's first committed index
        # the market is reduce-only and the order is refused: retry until it rests.
        price, size = PRICE, LOTS * 10**4
        maker = place_action(BTC_PERP, "buy", price, size)
        wait_for(
            lambda: post(net, 1, alice.key, alice.address, maker, domain)["status"] == "committed",
            60,
            "a fresh committee index for BTC-PERP (the order rests)",
        )
        taker = place_action(BTC_PERP, "sell", price, size, tif="ioc")
        assert post(net, 2, bob.key, bob.address, taker, domain)["status"] == "committed"
        notional = LOTS * price
        fees = notional * 2 // 10_000 + notional * 5 // 10_000

        # Checkpoints land while the oracle moves the mark; then three members stop, so
        # no new checkpoint can be signed and the last accepted root stays the last.
        start = settlement.state().sequence
        wait_for(lambda: settlement.state().sequence >= start + 2, 120, "checkpoints land")
        for node in net.nodes[1:]:
            stop_pid(node.pid)

        # Every USDC leaf of the checkpoint the contract accepted, served by the survivor.
        holders = [alice.address, bob.address, genesis.exchange.fee_account, INSURANCE_ACCOUNT]
        proofs: list[dict[str, Any]] = []
        roots: list[bytes] = []

        def proven_against_chain() -> bool:
            proofs.clear()
            root = settlement.state().state_root
            for holder in holders:
                p = get(net, f"/v1/proofs/balance/0x{holder.hex()}/{USDC}")
                if p is None:
                    continue
                leaf = bytes.fromhex(p["leaf"][2:])
                path = [bytes.fromhex(x[2:]) for x in p["proof"]]
                if process_proof(path, leaf) != root:
                    return False
                proofs.append(p)
            roots[:] = [root]
            return len(proofs) >= 3

        wait_for(proven_against_chain, 60, "the last checkpoint's proofs match the chain")
        stop_pid(net.nodes[0].pid)
        assert settlement.state().state_root == roots[0], "a checkpoint landed after the proofs"
        by_holder = {bytes.fromhex(p["account"][2:]): int(p["balance"]) for p in proofs}
        # Opposite positions: what one side gained at the mark the other lost, and the fees
        # went to the fee account; the insurance fund holds any funding residue.
        assert sum(by_holder.values()) == 2 * DEPOSIT, by_holder
        assert by_holder[genesis.exchange.fee_account] == fees
        # The exit values carry the positions' PnL at the mark (the random walk has moved
        # it off the trade price): neither trader's is its plain collateral.
        assert by_holder[alice.address] != DEPOSIT - notional * 2 // 10_000, by_holder
        assert by_holder[bob.address] != DEPOSIT - notional * 5 // 10_000, by_holder

        w3.provider.make_request("evm_increaseTime", [settlement.escape_delay_s() + 1])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        anyone = chain.traders[2].key
        settlement.freeze(anyone)
        for p in proofs:
            account = bytes.fromhex(p["account"][2:])
            before = balance_of(w3, usdc, account)
            settlement.exit(
                anyone,
                account,
                usdc,
                int(p["balance"]),
                [bytes.fromhex(x[2:]) for x in p["proof"]],
            )
            assert balance_of(w3, usdc, account) - before == int(p["balance"])
        assert balance_of(w3, usdc, chain.settlement) == 0
    finally:
        down(net)
        assert chain.anvil_pid is None or not pid_alive(chain.anvil_pid)
