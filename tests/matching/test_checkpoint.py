"""State root and withdrawals root (PROTOCOL §3): leaf order, incremental updates, proofs."""

from __future__ import annotations

from matching.engine import Engine
from matching.merkle import EMPTY_ROOT, balance_leaf, root_of, verify, withdrawal_leaf
from tests.matching.helpers import (
    ALICE,
    BOB,
    BTC,
    CAROL,
    ETH,
    FEE,
    USDC,
    Harness,
    place,
    withdraw,
)


def expected_leaves(engine: Engine) -> list[bytes]:
    """Recomputed from scratch: one leaf per credited pair, in first-credit order."""
    leaves = []
    for account, asset in engine.state.pairs:
        token = engine.assets[asset]
        total = account.available[asset] + account.locked[asset]
        leaves.append(balance_leaf(account.address, token.token, total * token.unit))
    return leaves


def busy_harness() -> Harness:
    h = Harness()
    h.fund(ALICE, USDC, 1_000_000)
    h.fund(BOB, ETH, 10_000)
    h.fund(CAROL, BTC, 50)
    h.one(ALICE, place(side="buy", price=1000, size=100))
    h.one(BOB, place(side="sell", price=1000, size=60))  # fills: Bob gets USDC, Alice ETH
    return h


def test_empty_engine_has_the_empty_root() -> None:
    assert Harness().engine.checkpoint().state_root == EMPTY_ROOT


def test_leaves_follow_first_credit_order() -> None:
    h = busy_harness()
    pairs = [(a.address, asset) for a, asset in h.engine.state.pairs]
    # Deposits, then the trade: Alice's ETH, Bob's USDC, then the fee account's USDC.
    assert pairs == [(ALICE, USDC), (BOB, ETH), (CAROL, BTC), (ALICE, ETH), (BOB, USDC),
                     (FEE, USDC)]  # fmt: skip
    checkpoint = h.engine.checkpoint()
    assert checkpoint.state_root == root_of(expected_leaves(h.engine))


def test_balances_are_committed_in_chain_units() -> None:
    h = busy_harness()
    h.engine.checkpoint()
    leaf, proof = h.engine.balance_proof(BOB, ETH) or (b"", [])
    eth = h.engine.assets[ETH]
    assert leaf == balance_leaf(BOB, eth.token, 9_940 * eth.unit)  # sold 60 of 10,000
    assert verify(proof, h.engine.checkpoint().state_root, leaf)


def test_every_leaf_proves_and_tampering_fails() -> None:
    h = busy_harness()
    root = h.engine.checkpoint().state_root
    for account, asset in h.engine.state.pairs:
        proved = h.engine.balance_proof(account.address, h.engine.asset_ids[asset])
        assert proved is not None
        leaf, proof = proved
        assert verify(proof, root, leaf)
        assert not verify(proof, root, bytes(32))
        if proof:
            assert not verify([bytes(32), *proof[1:]], root, leaf)


def test_incremental_root_matches_a_full_rebuild_after_more_activity() -> None:
    h = busy_harness()
    first = h.engine.checkpoint().state_root
    assert h.engine.checkpoint().state_root == first  # nothing moved
    h.one(ALICE, place(side="buy", price=1005, size=50))
    h.one(BOB, place(side="sell", price=990, size=60))
    h.one(BOB, withdraw(USDC, 100))
    h.fund(CAROL, USDC, 7)
    second = h.engine.checkpoint().state_root
    assert second != first
    assert second == root_of(expected_leaves(h.engine))


def test_a_pair_without_a_leaf_has_no_proof_until_the_next_checkpoint() -> None:
    h = Harness()
    h.fund(ALICE, USDC, 5)
    assert h.engine.balance_proof(ALICE, USDC) is None
    h.engine.checkpoint()
    assert h.engine.balance_proof(ALICE, USDC) is not None
    assert h.engine.balance_proof(ALICE, ETH) is None


def test_zero_balance_keeps_its_leaf() -> None:
    h = Harness()
    h.fund(ALICE, USDC, 5)
    h.one(ALICE, withdraw(USDC, 5))
    checkpoint = h.engine.checkpoint()
    usdc = h.engine.assets[USDC]
    assert checkpoint.state_root == balance_leaf(ALICE, usdc.token, 0)  # the one leaf


def test_withdrawals_root_per_checkpoint_with_proofs() -> None:
    h = Harness()
    h.fund(ALICE, USDC, 1_000)
    h.fund(BOB, ETH, 1_000)
    h.one(ALICE, withdraw(USDC, 10))
    h.one(BOB, withdraw(ETH, 20))
    first = h.engine.checkpoint()
    h.one(ALICE, withdraw(USDC, 30))
    second = h.engine.checkpoint()
    third = h.engine.checkpoint()
    assert [w.withdrawal_id for w in first.withdrawals] == [1, 2]
    assert [w.withdrawal_id for w in second.withdrawals] == [3]
    assert third.withdrawals == () and third.withdrawals_root == EMPTY_ROOT
    eth = h.engine.assets[ETH]
    assert first.withdrawals[1].amount == 20 * eth.unit  # chain units
    leaves = [
        withdrawal_leaf(w.withdrawal_id, w.account, w.token, w.amount) for w in first.withdrawals
    ]
    assert first.withdrawals_root == root_of(leaves)
    for checkpoint in (first, second):
        for w in checkpoint.withdrawals:
            proved = h.engine.withdrawal_proof(checkpoint.sequence, w.withdrawal_id)
            assert proved is not None
            leaf, proof = proved
            assert leaf == w.leaf()
            assert verify(proof, checkpoint.withdrawals_root, leaf)
            assert not verify(proof, checkpoint.withdrawals_root, bytes(32))
    assert h.engine.withdrawal_proof(second.sequence, 1) is None
    assert [c.sequence for c in (first, second, third)] == [1, 2, 3]
    assert second.last_deposit_id == 2
