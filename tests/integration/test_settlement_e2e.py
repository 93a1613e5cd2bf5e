"""End to end on anvil with a 4-member committee of real processes: deposit → trade →
withdraw → checkpoint lands → claim on chain; then the committee stops, anyone freezes
the contract after the escape delay, every account exits with its proven balance, and
the contract's token balances cover every claim exactly (nothing left, nothing short)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.settlement import Settlement, balance_of
from matching.merkle import process_proof
from node.chain.localchain import ChainSetup, connect, deposit
from node.genesis import ConsensusParams, load_genesis
from node.intents import Domain, intent_to_json, place_action, sign_intent
from node.localnet import Localnet, down, pid_alive, stop_pid, up
from node.procs import free_base_port, start_node
from tests.node.cluster import wait_for

pytestmark = pytest.mark.integration

ETH = bytes(20)
LOT = 10**6  # gwei: 0.001 ETH
PRICE = 3_000_000  # micro-USDC per lot: 3000 USDC per ETH


def get(net: Localnet, path: str, node: int = 0) -> Any:
    response = httpx.get(f"{net.nodes[node].api}{path}", timeout=10)
    return response.json() if response.status_code == 200 else None


def post(
    net: Localnet, node: int, key: bytes, account: bytes, action: dict[str, Any], domain: Domain
) -> dict[str, Any]:
    """Sign `action` and send it to `node`, waiting for its commit; the intent's result."""
    intent = sign_intent(key, account, time.time_ns() // 1_000_000, action, domain)
    response = httpx.post(
        f"{net.nodes[node].api}/v1/intents?wait=committed&timeout_ms=20000",
        json=intent_to_json(intent),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def submit(
    net: Localnet, node: int, key: bytes, account: bytes, action: dict[str, Any], domain: Domain
) -> dict[str, Any]:
    result = post(net, node, key, account, action, domain)
    assert result["status"] == "committed", result
    return result


def order(side: str, tif: str = "gtc") -> dict[str, Any]:
    return place_action(0, side, PRICE, 10 * LOT, tif=tif)


def balance(net: Localnet, account: bytes, symbol: str, node: int = 0) -> int:
    body = get(net, f"/v1/accounts/0x{account.hex()}", node)
    return 0 if body is None else int(body["balances"][symbol]["available"])


def test_deposit_trade_withdraw_claim_then_freeze_and_exit(tmp_path: Path) -> None:
    params = ConsensusParams(round_timeout_ms=1000, checkpoint_interval_blocks=10)
    net = up(tmp_path / "net", 4, free_base_port(4), 90, chain=True, consensus=params)
    folder = Path(net.folder)
    chain = ChainSetup.load(folder)
    try:
        genesis = load_genesis(folder / "genesis.toml")
        domain = genesis.domain()
        usdc = chain.tokens["USDC"]
        alice, bob = chain.traders[0], chain.traders[1]
        w3 = connect(chain.url)
        settlement = Settlement(w3, chain.settlement)

        # Deposits reach every replica through the chain watchers and consensus.
        deposit(chain.url, alice.key, ETH, 10 * LOT * 10**9, contract=chain.settlement)
        deposit(chain.url, bob.key, usdc, 100_000_000, contract=chain.settlement)
        for node in range(4):
            wait_for(
                lambda n=node: balance(net, alice.address, "ETH", n) == 10 * LOT, what="ETH deposit"
            )
            wait_for(
                lambda n=node: balance(net, bob.address, "USDC", n) == 100_000_000, what="USDC"
            )

        # Alice rests a sell on node 1; Bob takes it on node 2.
        submit(net, 1, alice.key, alice.address, order("sell"), domain)
        submit(net, 2, bob.key, bob.address, order("buy", "ioc"), domain)
        notional = 10 * PRICE
        maker_fee, taker_fee = notional * 2 // 10_000, notional * 5 // 10_000
        assert balance(net, alice.address, "USDC", 3) == notional - maker_fee
        assert balance(net, bob.address, "ETH", 3) == 10 * LOT
        assert balance(net, bob.address, "USDC", 3) == 100_000_000 - notional - taker_fee

        # Both withdraw what they bought; the next checkpoint carries the withdrawals.
        alice_out = notional - maker_fee
        withdraw = {"type": "withdraw", "asset": 1, "amount": alice_out}
        submit(net, 0, alice.key, alice.address, withdraw, domain)
        withdraw = {"type": "withdraw", "asset": 0, "amount": 10 * LOT}
        submit(net, 3, bob.key, bob.address, withdraw, domain)

        def proof_of(withdrawal_id: int) -> dict[str, Any] | None:
            for cp in get(net, "/v1/checkpoints")["checkpoints"]:
                found = get(net, f"/v1/proofs/withdrawal/{cp['sequence']}/{withdrawal_id}")
                if found:
                    return found  # type: ignore[no-any-return]
            return None

        for withdrawal_id, trader in ((1, alice), (2, bob)):
            proof = wait_for(lambda w=withdrawal_id: proof_of(w), what="withdrawal checkpointed")
            sequence = int(proof["sequence"])
            wait_for(lambda s=sequence: settlement.state().sequence >= s, 90, "checkpoint landed")
            token = bytes.fromhex(proof["token"][2:])
            before = balance_of(w3, token, trader.address)
            tx = settlement.claim_withdrawal(
                trader.key,
                sequence,
                withdrawal_id,
                trader.address,
                token,
                int(proof["amount"]),
                [bytes.fromhex(p[2:]) for p in proof["proof"]],
            )
            paid = balance_of(w3, token, trader.address) - before
            gas_cost = (
                0
                if token != ETH
                else tx.gas_used * w3.eth.get_transaction_receipt(tx.tx_hash)["effectiveGasPrice"]
            )
            assert paid + gas_cost == int(proof["amount"])

        # A member stopped while the others cross several checkpoint heights restarts,
        # catches up across them and keeps signing (finding 3 of issue 12: the synced
        # checkpoints were handed to its checkpointer twice and it crashed on restart).
        lagger = net.nodes[3]
        stop_pid(lagger.pid)
        stopped_at = int(get(net, "/v1/status")["committed_height"])
        wait_for(
            lambda: int(get(net, "/v1/status")["committed_height"]) > stopped_at + 35,
            60,
            "the others commit past three checkpoint heights",
        )
        lagger.pid = start_node(Path(lagger.config), Path(lagger.log))
        net.save()
        target = int(get(net, "/v1/status")["committed_height"])

        def caught_up() -> bool:
            try:  # its API answers 503 while it restores (node/api/probe.py), then status
                status = get(net, "/v1/status", 3)
            except httpx.HTTPError:
                return False
            return status is not None and int(status["committed_height"]) >= target

        wait_for(caught_up, 60, "the restarted member catches up")
        assert pid_alive(lagger.pid), "the restarted member exited"

        # Every leaf of the final state, proven against the root the contract accepted.
        holders = [alice.address, bob.address, genesis.exchange.fee_account]
        proofs: list[dict[str, Any]] = []

        def proven_against_chain() -> bool:
            proofs.clear()
            root = settlement.state().state_root
            for holder in holders:
                for asset in (0, 1):
                    p = get(net, f"/v1/proofs/balance/0x{holder.hex()}/{asset}")
                    if p is None:
                        continue
                    leaf = bytes.fromhex(p["leaf"][2:])
                    path = [bytes.fromhex(x[2:]) for x in p["proof"]]
                    if process_proof(path, leaf) != root:
                        return False
                    proofs.append(p)
            return bool(proofs)

        wait_for(proven_against_chain, 90, "final state root accepted on chain")
        for node in net.nodes:  # the committee stops; the chain stays
            stop_pid(node.pid)

        w3.provider.make_request("evm_increaseTime", [settlement.escape_delay_s() + 1])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        anyone = chain.traders[2].key
        settlement.freeze(anyone)
        for p in proofs:
            settlement.exit(
                anyone,
                bytes.fromhex(p["account"][2:]),
                bytes.fromhex(p["token"][2:]),
                int(p["balance"]),
                [bytes.fromhex(x[2:]) for x in p["proof"]],
            )
        assert balance_of(w3, usdc, chain.settlement) == 0
        assert w3.eth.get_balance(w3.to_checksum_address(chain.settlement)) == 0
    finally:
        down(net)
        assert chain.anvil_pid is None or not pid_alive(chain.anvil_pid)
