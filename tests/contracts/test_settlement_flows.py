"""Happy paths on both chains: deposit → checkpoint → claim; rotation; freeze → exit all."""

from __future__ import annotations

from contracts.settlement import ETH, Erc20
from contracts.signing import Checkpoint, address_of, committee_hash
from matching.merkle import EMPTY_ROOT, MerkleTree, balance_leaf, keccak, withdrawal_leaf
from tests.contracts.settlement_world import ESCAPE_DELAY_S, THRESHOLD, World, member_keys, reverts

ETHER = 10**18


def test_deposit_checkpoint_claim(world: World) -> None:
    s, alice, bob = world.s, world.users[0], world.users[1]
    a, b = address_of(alice), address_of(bob)
    r1 = s.deposit_eth(alice, 2 * ETHER)
    r2 = s.deposit_token(bob, world.token, 1000 * ETHER)
    assert r1.event("Deposit").args == {
        "depositId": 1,
        "account": a,
        "token": ETH,
        "amount": 2 * ETHER,
    }
    assert r2.event("Deposit").args["depositId"] == 2
    assert [(d.deposit_id, d.account, d.amount) for d in s.deposits(0)] == [
        (1, a, 2 * ETHER),
        (2, b, 1000 * ETHER),
    ]
    assert s.deposit_record(2) == (b, world.token, 1000 * ETHER)

    state = MerkleTree(
        [balance_leaf(a, ETH, 3 * ETHER // 2), balance_leaf(b, world.token, 900 * ETHER)]
    )
    withdrawals = [(1, a, ETH, ETHER // 2), (2, b, world.token, 100 * ETHER)]
    wtree = MerkleTree([withdrawal_leaf(*w) for w in withdrawals])
    cp = Checkpoint(0, 1, state.root(), wtree.root(), 2)
    accepted = world.checkpoint(cp).event("CheckpointAccepted").args
    assert accepted == {
        "sequence": 1,
        "epoch": 0,
        "stateRoot": cp.state_root,
        "withdrawalsRoot": cp.withdrawals_root,
        "lastDepositId": 2,
    }
    st = s.state()
    assert (st.sequence, st.last_deposit_id, st.deposit_count, st.state_root) == (
        1,
        2,
        2,
        cp.state_root,
    )
    assert s.withdrawals_root(1) == wtree.root()

    for i, (wid, account, token, amount) in enumerate(withdrawals):
        before = world.balance(token, account)
        # Anyone may relay a claim; the funds go to the account in the leaf.
        result = s.claim_withdrawal(world.deployer, 1, wid, account, token, amount, wtree.proof(i))
        assert result.event("WithdrawalClaimed").args["amount"] == amount
        assert world.balance(token, account) == before + amount
        assert s.is_claimed(wid)
    assert world.balance(ETH, s.address) == 3 * ETHER // 2
    assert world.balance(world.token, s.address) == 900 * ETHER


def test_empty_checkpoints_and_domain(world: World) -> None:
    s = world.s
    assert s.state().state_root == (1).to_bytes(32, "big")  # NO_STATE_ROOT before the first
    assert s.state().committee_hash == committee_hash(world.members)
    for seq in (1, 2):
        world.checkpoint(Checkpoint(0, seq, EMPTY_ROOT, EMPTY_ROOT, 0))
    assert s.state().sequence == 2
    assert s.withdrawals_root(2) == EMPTY_ROOT
    assert bytes(s._call("domainSeparator")) == keccak(
        keccak(
            b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
        )
        + keccak(b"seqnet")
        + keccak(b"1")
        + s.chain_id.to_bytes(32, "big")
        + bytes(12)
        + s.address
    )


def test_committee_rotation(world: World) -> None:
    s = world.s
    new_keys = member_keys(7, b"next")
    new_members = [address_of(k) for k in new_keys]
    digest = s.rotation_digest(1, new_members, 5)
    result = s.rotate_committee(world.deployer, new_members, 5, world.members, world.sigs(digest))
    assert result.event("CommitteeRotated").args["members"] == new_members
    st = s.state()
    assert (st.epoch, st.threshold, st.committee_hash) == (1, 5, committee_hash(new_members))

    cp = Checkpoint(1, 1, keccak(b"s"), EMPTY_ROOT, 0)
    # The old committee no longer signs for epoch 1.
    with reverts("CommitteeMismatch"):
        world.checkpoint(cp)
    sigs = {
        address_of(k): world.sigs(s.checkpoint_digest(cp), [k])[address_of(k)] for k in new_keys[:5]
    }
    s.submit_checkpoint(world.deployer, cp, new_members, sigs)
    assert s.state().sequence == 1
    # An epoch-0 checkpoint is refused by epoch, whoever signed it.
    with reverts("WrongEpoch"):
        world.checkpoint(Checkpoint(0, 2, keccak(b"s"), EMPTY_ROOT, 0))


def test_freeze_exit_all_accounts_covers_every_claim(world: World) -> None:
    """Deposits, one checkpoint with trades and withdrawals, a late deposit, then the
    committee stops: freeze, claim, exit every leaf, reclaim; the contract ends at zero."""
    s, users, token = world.s, world.users, world.token
    accts = [address_of(u) for u in users]
    for i, u in enumerate(users):
        s.deposit_eth(u, (i + 1) * ETHER)
        s.deposit_token(u, token, (i + 1) * 100 * ETHER)
    # Off-chain: trades moved value between accounts; some withdrawals were debited.
    eth = {accts[0]: ETHER // 2, accts[1]: 3 * ETHER, accts[2]: 2 * ETHER}  # 5.5 of 6 ETH
    tok = {accts[0]: 250 * ETHER, accts[1]: 0, accts[2]: 300 * ETHER}  # 550 of 600
    withdrawals = [(1, accts[0], ETH, ETHER // 2), (2, accts[1], token, 50 * ETHER)]
    leaves = [(a, ETH, eth[a]) for a in accts] + [(a, token, tok[a]) for a in accts]
    state = MerkleTree([balance_leaf(*leaf) for leaf in leaves])
    wtree = MerkleTree([withdrawal_leaf(*w) for w in withdrawals])
    world.checkpoint(Checkpoint(0, 1, state.root(), wtree.root(), 6))
    late = s.deposit_eth(users[2], 7 * ETHER).event("Deposit").args["depositId"]

    with reverts("EscapeDelayNotElapsed"):
        s.freeze(users[0])
    world.chain.advance_time(ESCAPE_DELAY_S)
    frozen = s.freeze(users[1]).event("Frozen").args
    assert frozen == {"sequence": 1, "stateRoot": state.root(), "lastDepositId": 6}
    with reverts("ContractFrozen"):
        s.deposit_eth(users[0], ETHER)
    with reverts("ContractFrozen"):
        world.checkpoint(Checkpoint(0, 2, state.root(), EMPTY_ROOT, 7))

    paid: dict[tuple[bytes, bytes], int] = {}
    for i, (account, tkn, balance) in enumerate(leaves):
        before = world.balance(tkn, account)
        s.exit(world.deployer, account, tkn, balance, state.proof(i))
        paid[account, tkn] = world.balance(tkn, account) - before
        assert s.has_exited(account, tkn)
    assert paid == {(a, t): b for a, t, b in leaves}
    for i, w in enumerate(withdrawals):  # claims of accepted checkpoints survive the freeze
        s.claim_withdrawal(world.deployer, 1, *w, wtree.proof(i))
    before = world.balance(ETH, accts[2])
    s.reclaim_deposit(world.deployer, late)
    assert world.balance(ETH, accts[2]) == before + 7 * ETHER
    assert s.deposit_record(late) is None
    assert world.balance(ETH, s.address) == 0
    assert Erc20(world.chain.w3, token).balance_of(s.address) == 0
    assert THRESHOLD == 3
