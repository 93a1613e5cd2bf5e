"""Bad input against the contract on both chains: each attempt reverts with a named error."""

from __future__ import annotations

import pytest

from contracts.settlement import ETH, Erc20, Settlement, TokenConfig
from contracts.signing import Checkpoint, Signature, address_of, checkpoint_digest, sign
from matching.merkle import EMPTY_ROOT, MerkleTree, balance_leaf, keccak, withdrawal_leaf
from tests.contracts.settlement_world import (
    ESCAPE_DELAY_S,
    THRESHOLD,
    TOKEN_UNIT,
    World,
    member_keys,
    reverts,
)

ETHER = 10**18
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def cp(sequence: int = 1, last_deposit_id: int = 0, epoch: int = 0) -> Checkpoint:
    return Checkpoint(epoch, sequence, keccak(b"state%d" % sequence), EMPTY_ROOT, last_deposit_id)


def submit(
    world: World, checkpoint: Checkpoint, sigs: list[Signature], members: list[bytes] | None = None
) -> None:
    world.s.submit_checkpoint(world.deployer, checkpoint, members or world.members, sigs)


# ---------------------------------------------------------------- signatures


def test_threshold_minus_one_signatures(world: World) -> None:
    c = cp()
    sigs = world.sigs(world.s.checkpoint_digest(c), world.keys[: THRESHOLD - 1])
    with reverts("InsufficientSignatures"):
        world.s.submit_checkpoint(world.deployer, c, world.members, sigs)


def test_duplicated_signer(world: World) -> None:
    c = cp()
    d = world.s.checkpoint_digest(c)
    one, two = sign(world.keys[0], d), sign(world.keys[1], d)
    with reverts("DuplicateSigner"):
        submit(world, c, [one, one, two])


def test_unsorted_signers(world: World) -> None:
    c = cp()
    d = world.s.checkpoint_digest(c)
    sigs = [sign(k, d) for k in world.keys[:THRESHOLD]]
    with reverts("SignersNotSorted"):
        submit(world, c, [sigs[1], sigs[0], sigs[2]])


def test_non_member_signer(world: World) -> None:
    c = cp()
    outsider = member_keys(1, b"outsider")
    keys = sorted([*world.keys[:2], *outsider], key=address_of)
    with reverts("NotMember"):
        world.checkpoint(c, keys)


def test_wrong_member_list(world: World) -> None:
    c = cp()
    sigs = world.sigs(world.s.checkpoint_digest(c))
    with reverts("CommitteeMismatch"):
        world.s.submit_checkpoint(world.deployer, c, world.members[:3], sigs)


@pytest.mark.parametrize("domain", ["chain_id", "contract"])
def test_signatures_for_another_domain(world: World, domain: str) -> None:
    c = cp()
    chain_id, contract = world.s.chain_id, world.s.address
    if domain == "chain_id":
        chain_id += 1
    else:
        contract = keccak(b"another contract")[:20]
    d = checkpoint_digest(chain_id, contract, c)
    sigs = {address_of(k): sign(k, d) for k in world.keys[:THRESHOLD]}
    with reverts("NotMember"):
        world.s.submit_checkpoint(world.deployer, c, world.members, sigs)


def test_malformed_signatures(world: World) -> None:
    c = cp()
    d = world.s.checkpoint_digest(c)
    sigs = [sign(k, d) for k in world.keys[:THRESHOLD]]
    # Compact signatures cannot carry an s above 2**255; any s in (n/2, 2**255) is a
    # malleable form and refused, as are signatures ecrecover rejects (r = 0).
    high_s = Signature(sigs[0].r, (_N // 2 + 1).to_bytes(32, "big"))
    with reverts("InvalidSignature"):
        submit(world, c, [high_s, *sigs[1:]])
    with reverts("InvalidSignature"):
        submit(world, c, [*sigs[:2], Signature(bytes(32), sigs[2].vs)])


# ---------------------------------------------------------------- sequence, epoch, deposits


def test_replayed_and_skipped_sequence(world: World) -> None:
    world.checkpoint(cp(1))
    with reverts("UnexpectedSequence"):
        world.checkpoint(cp(1))  # replay
    with reverts("UnexpectedSequence"):
        world.checkpoint(cp(3))  # skip
    with reverts("WrongEpoch"):
        world.checkpoint(cp(2, epoch=1))
    world.checkpoint(cp(2))


def test_last_deposit_id_bounds(world: World) -> None:
    world.s.deposit_eth(world.users[0], ETHER)
    world.s.deposit_eth(world.users[0], ETHER)
    with reverts("DepositIdBeyondDeposits"):
        world.checkpoint(cp(1, last_deposit_id=3))
    world.checkpoint(cp(1, last_deposit_id=2))
    with reverts("DepositIdBackwards"):
        world.checkpoint(cp(2, last_deposit_id=1))


# ---------------------------------------------------------------- withdrawals


def _withdrawal_world(world: World, token: bytes, amount: int) -> MerkleTree:
    """One withdrawal of `amount` to users[0] (id 1) next to a second leaf, checkpointed."""
    a = address_of(world.users[0])
    tree = MerkleTree([withdrawal_leaf(1, a, token, amount), withdrawal_leaf(2, a, token, 1)])
    world.checkpoint(Checkpoint(0, 1, keccak(b"s"), tree.root(), world.s.state().deposit_count))
    return tree


def test_double_claim_and_forged_proofs(world: World) -> None:
    s, a = world.s, address_of(world.users[0])
    s.deposit_eth(world.users[0], 2 * ETHER)
    tree = _withdrawal_world(world, ETH, ETHER)
    with reverts("InvalidProof"):  # more than was debited
        s.claim_withdrawal(world.deployer, 1, 1, a, ETH, 2 * ETHER, tree.proof(0))
    with reverts("InvalidProof"):  # to someone else
        s.claim_withdrawal(
            world.deployer, 1, 1, address_of(world.users[1]), ETH, ETHER, tree.proof(0)
        )
    with reverts("InvalidProof"):  # another leaf's proof
        s.claim_withdrawal(world.deployer, 1, 1, a, ETH, ETHER, tree.proof(1))
    with reverts("InvalidProof"):  # an inner node is not a leaf: the root itself, empty proof
        s.claim_withdrawal(world.deployer, 1, 1, a, ETH, ETHER, [])
    with reverts("UnknownWithdrawalsRoot"):
        s.claim_withdrawal(world.deployer, 2, 1, a, ETH, ETHER, tree.proof(0))
    s.claim_withdrawal(world.deployer, 1, 1, a, ETH, ETHER, tree.proof(0))
    with reverts("AlreadyClaimed"):
        s.claim_withdrawal(world.deployer, 1, 1, a, ETH, ETHER, tree.proof(0))


def test_reentrancy_through_malicious_token(world: World) -> None:
    s, user, a = world.s, world.users[0], address_of(world.users[0])
    evil = Erc20(world.chain.w3, world.evil, "ReentrantToken")
    evil.mint(world.deployer, a, 1010)  # minting moves tokens too: mint before arming
    s.deposit_token(user, world.evil, 1000)
    tree = _withdrawal_world(world, world.evil, 400)
    claim = s.contract.encode_abi(
        "claimWithdrawal",
        args=[
            1,
            1,
            evil.contract.w3.to_checksum_address(a),
            evil.contract.address,
            400,
            tree.proof(0),
        ],
    )
    evil._send(world.deployer, "arm", s.contract.address, bytes.fromhex(claim[2:]))
    with reverts("ReentrancyGuardReentrantCall"):
        s.claim_withdrawal(world.deployer, 1, 1, a, world.evil, 400, tree.proof(0))
    # Re-entering through the deposit's transferFrom is refused the same way.
    deposit = s.contract.encode_abi("depositToken", args=[evil.contract.address, 1])
    evil._send(world.deployer, "arm", s.contract.address, bytes.fromhex(deposit[2:]))
    evil.approve(user, s.address, 10)
    with reverts("ReentrancyGuardReentrantCall"):
        s.deposit_token(user, world.evil, 10, approve=False)
    assert not s.is_claimed(1)
    assert evil.balance_of(s.address) == 1000


def test_fee_on_transfer_token_credits_what_arrived(world: World) -> None:
    s, user, a = world.s, world.users[0], address_of(world.users[0])
    fee = Erc20(world.chain.w3, world.fee_token, "FeeOnTransferToken")
    # 100 units arrive as 99 (1% fee): credited exactly what arrived.
    got = s.deposit_token(user, world.fee_token, 100 * TOKEN_UNIT).event("Deposit").args
    assert got["amount"] == 99 * TOKEN_UNIT
    # 3 units arrive as 2.97: credited 2, the 0.97 dust stays in the contract.
    got = s.deposit_token(user, world.fee_token, 3 * TOKEN_UNIT).event("Deposit").args
    assert got["amount"] == 2 * TOKEN_UNIT
    assert s.deposit_record(2) == (a, world.fee_token, 2 * TOKEN_UNIT)
    assert fee.balance_of(s.address) == 99 * TOKEN_UNIT + 297 * TOKEN_UNIT // 100
    with reverts("ZeroAmount"):  # 1 unit arrives as 0.99 → nothing to credit
        s.deposit_token(user, world.fee_token, TOKEN_UNIT)


def test_deposit_rules(world: World) -> None:
    s, user = world.s, world.users[0]
    with reverts("AmountNotMultipleOfUnit"):
        s.deposit_eth(user, 10**9 + 1)
    with reverts("AmountNotMultipleOfUnit"):
        s.deposit_token(user, world.token, TOKEN_UNIT + 1)
    with reverts("ZeroAmount"):
        s.deposit_eth(user, 0)
    with reverts("TokenNotListed"):
        s.deposit_token(user, keccak(b"unlisted")[:20], TOKEN_UNIT, approve=False)
    with reverts("TokenNotListed"):
        s.deposit_token(user, ETH, TOKEN_UNIT, approve=False)
    with reverts("AmountTooLarge"):  # engine amount must fit u64
        s.deposit_token(user, world.token, 2**64 * TOKEN_UNIT)


# ---------------------------------------------------------------- escape hatch


def _frozen_world(world: World) -> tuple[MerkleTree, bytes, int]:
    s, a = world.s, address_of(world.users[0])
    s.deposit_eth(world.users[0], 3 * ETHER)
    state = MerkleTree([balance_leaf(a, ETH, 3 * ETHER)])
    proof = state.proof(0)
    with reverts("NotFrozen"):
        s.exit(world.deployer, a, ETH, 3 * ETHER, proof)
    world.checkpoint(Checkpoint(0, 1, state.root(), EMPTY_ROOT, 1))
    with reverts("NotFrozen"):
        s.exit(world.deployer, a, ETH, 3 * ETHER, proof)
    world.chain.advance_time(ESCAPE_DELAY_S)
    s.freeze(world.deployer)
    return state, a, 3 * ETHER


def test_exit_rules(world: World) -> None:
    s = world.s
    with reverts("NotFrozen"):
        s.reclaim_deposit(world.deployer, 1)
    state, a, balance = _frozen_world(world)
    with reverts("AlreadyFrozen"):
        s.freeze(world.deployer)
    with reverts("InvalidProof"):  # above the proven balance
        s.exit(world.deployer, a, ETH, balance + 1, state.proof(0))
    with reverts("InvalidProof"):  # a token the account never held
        s.exit(world.deployer, a, world.token, balance, state.proof(0))
    s.exit(world.deployer, a, ETH, balance, state.proof(0))
    with reverts("AlreadyExited"):
        s.exit(world.deployer, a, ETH, balance, state.proof(0))
    with reverts("ContractFrozen"):
        s.rotate_committee(world.deployer, world.members, 3, world.members, [])


def test_reclaim_rules(world: World) -> None:
    s, user = world.s, world.users[1]
    s.deposit_eth(user, ETHER)  # id 1: the checkpoint below includes it
    state = MerkleTree([balance_leaf(address_of(user), ETH, ETHER)])
    world.checkpoint(Checkpoint(0, 1, state.root(), EMPTY_ROOT, 1))
    s.deposit_token(user, world.token, 5 * TOKEN_UNIT)  # id 2: never processed
    with reverts("NotFrozen"):
        s.reclaim_deposit(world.deployer, 2)
    world.chain.advance_time(ESCAPE_DELAY_S)
    s.freeze(world.deployer)
    with reverts("DepositAlreadyProcessed"):
        s.reclaim_deposit(world.deployer, 1)
    with reverts("UnknownDeposit"):
        s.reclaim_deposit(world.deployer, 3)
    before = world.balance(world.token, address_of(user))
    got = s.reclaim_deposit(world.deployer, 2).event("DepositReclaimed").args
    assert got["amount"] == 5 * TOKEN_UNIT
    assert world.balance(world.token, address_of(user)) == before + 5 * TOKEN_UNIT
    with reverts("DepositAlreadyReclaimed"):
        s.reclaim_deposit(world.deployer, 2)


# ---------------------------------------------------------------- rotation


def test_rotation_signed_by_the_wrong_set(world: World) -> None:
    s = world.s
    new_keys = member_keys(4, b"next")
    new_members = [address_of(k) for k in new_keys]
    digest = s.rotation_digest(1, new_members, 3)
    with reverts("NotMember"):  # the incoming committee cannot install itself
        s.rotate_committee(
            world.deployer, new_members, 3, world.members, world.sigs(digest, new_keys[:3])
        )
    with reverts("CommitteeMismatch"):  # nor by claiming to be the current one
        s.rotate_committee(
            world.deployer, new_members, 3, new_members, world.sigs(digest, new_keys[:3])
        )
    with reverts("InsufficientSignatures"):
        s.rotate_committee(
            world.deployer, new_members, 3, world.members, world.sigs(digest, world.keys[:2])
        )
    with reverts("NotMember"):  # signed for another epoch
        s.rotate_committee(
            world.deployer,
            new_members,
            3,
            world.members,
            world.sigs(s.rotation_digest(2, new_members, 3)),
        )
    with reverts("NotMember"):  # signed for another threshold
        s.rotate_committee(world.deployer, new_members, 2, world.members, world.sigs(digest))
    with reverts("MembersNotSorted"):
        s.rotate_committee(world.deployer, new_members[::-1], 3, world.members, world.sigs(digest))
    with reverts("InvalidThreshold"):
        s.rotate_committee(world.deployer, new_members, 5, world.members, world.sigs(digest))
    s.rotate_committee(world.deployer, new_members, 3, world.members, world.sigs(digest))
    with reverts("CommitteeMismatch"):  # replayed
        s.rotate_committee(world.deployer, new_members, 3, world.members, world.sigs(digest))


def test_constructor_rules(world: World) -> None:
    w3, key = world.chain.w3, world.deployer
    eth = [TokenConfig(ETH, 10**9)]
    with reverts("EmptyCommittee"):
        Settlement.deploy(w3, key, [], 1, eth, 60)
    with reverts("InvalidThreshold"):
        Settlement.deploy(w3, key, world.members, 0, eth, 60)
    with reverts("MembersNotSorted"):
        Settlement.deploy(w3, key, [world.members[1], world.members[0]], 1, eth, 60)
    with reverts("InvalidUnit"):
        Settlement.deploy(w3, key, world.members, 3, [TokenConfig(ETH, 15)], 60)
    with reverts("DuplicateToken"):
        Settlement.deploy(w3, key, world.members, 3, eth + eth, 60)
    with reverts("InvalidEscapeDelay"):
        Settlement.deploy(w3, key, world.members, 3, eth, 0)
