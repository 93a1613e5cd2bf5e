"""Checkpointers of a 4-member committee against a real Settlement on py-evm.

No runtime: each member has its own Engine fed the same entries (real deposits read back
from the chain, withdrawals), its checkpointer gets `engine.checkpoint()`, and "cps"
messages are delivered in-process. An absent member neither computes nor receives.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from contracts import chain as chains
from contracts.chain import Chain
from contracts.settlement import ETH, Settlement, TokenConfig, transact
from contracts.signing import Checkpoint, address_of, checkpoint_digest, sign
from matching.checkpoint import Checkpoint as EngineCheckpoint
from matching.config import Asset
from matching.config import Genesis as ExchangeGenesis
from matching.engine import Engine
from matching.merkle import keccak
from node.chain.checkpointer import (
    Checkpointer,
    CheckpointerOptions,
    SignatureResult,
    signature_message,
)
from node.chain.watcher import map_deposit
from node.payload import deposit_engine_entry

ETH_UNIT = 10**9
N, THRESHOLD = 4, 3
TAKEOVER_S = 1.0


def member_keys() -> list[bytes]:
    return [keccak(b"checkpointer member" + bytes([i])) for i in range(N)]


@pytest.fixture
def chain() -> Iterator[Chain]:
    with chains.tester_chain() as c:
        yield c


@dataclass
class Member:
    index: int
    key: bytes
    engine: Engine
    cp: Checkpointer


@dataclass
class Committee:
    chain: Chain
    s: Settlement
    members: list[Member]
    trader: bytes
    limiter: trio.CapacityLimiter
    absent: set[int] = field(default_factory=set)
    ts_ms: int = 1_000_000

    def deliver(self, sender: int, message: list[Any]) -> None:
        if sender in self.absent:
            return
        for m in self.members:
            if m.index != sender and m.index not in self.absent:
                m.cp.on_peer_signature(sender, message)

    def apply(self, entries: list[dict[str, Any]], only: int | None = None) -> None:
        self.ts_ms += 1000
        for m in self.members:
            if only is None or m.index == only:
                m.engine.apply_block(self.ts_ms, entries)

    def deposit(self, amount_wei: int) -> None:
        result = self.s.deposit_eth(self.trader, amount_wei)
        args = result.event("Deposit").args
        assets = self.members[0].engine.assets
        record, problem = map_deposit(
            args["depositId"], args["account"], args["token"], args["amount"], assets
        )
        assert problem is None
        self.apply([deposit_engine_entry(record)])

    def withdraw(self, amount: int, only: int | None = None) -> None:
        account = address_of(self.trader)
        entry = {
            "account": account,
            "signer": account,
            "nonce": self.ts_ms + 1000,
            "action": {"type": "withdraw", "asset": 0, "amount": amount},
        }
        self.apply([entry], only)

    def checkpoint(self) -> None:
        for m in self.members:
            cp = m.engine.checkpoint()
            if m.index not in self.absent:
                m.cp.on_checkpoint(cp)

    async def landed(self, sequence: int, timeout_s: float = 10.0) -> None:
        with trio.fail_after(timeout_s):
            while (await self.read(self.s.state)).sequence < sequence:
                await trio.sleep(0.05)

    async def read(self, fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(*args), limiter=self.limiter)

    async def accepted(self) -> list[Any]:
        events = await self.read(self.s.events, 0)
        return [e for e in events if e.name == "CheckpointAccepted"]

    def submitted(self) -> list[int]:
        return [m.cp.counters["checkpoints_submitted"] for m in self.members]


def make_committee(chain: Chain) -> Committee:
    w3, funder = chain.w3, chain.keys[0]
    keys = member_keys()
    addresses = [address_of(k) for k in keys]
    s = Settlement.deploy(
        w3, funder, sorted(addresses), THRESHOLD, [TokenConfig(ETH, ETH_UNIT)], 3600
    )
    for a in addresses:
        transact(w3, funder, a, b"", value=10**18)
    exchange = ExchangeGenesis((Asset(0, "ETH", ETH, ETH_UNIT),), (), addresses[0])
    limiter = trio.CapacityLimiter(1)  # py-evm is not thread-safe
    options = CheckpointerOptions(takeover_s=TAKEOVER_S, poll_interval_s=0.05, resend_s=60)
    committee = Committee(chain, s, [], chain.keys[1], limiter)
    for i, key in enumerate(keys):
        cp = Checkpointer(
            members=addresses,
            me=i,
            key=key,
            chain_id=chain.chain_id,
            contract=s.address,
            settlement=s,
            send_all=functools.partial(committee.deliver, i),
            threshold=THRESHOLD,
            options=options,
            limiter=limiter,
        )
        committee.members.append(Member(i, key, Engine(exchange), cp))
    return committee


async def run_members(committee: Committee, nursery: trio.Nursery) -> None:
    for m in committee.members:
        if m.index not in committee.absent:
            await nursery.start(m.cp.run)


async def test_threshold_gathered_one_submission_and_withdrawal_claimable(chain: Chain) -> None:
    c = make_committee(chain)
    async with trio.open_nursery() as nursery:
        await run_members(c, nursery)
        c.deposit(3 * 10**18)
        c.withdraw(10**9)  # 1 ETH in engine units (gwei)
        c.checkpoint()
        await c.landed(1)
        await trio.sleep(TAKEOVER_S * 1.5)  # nobody else submits after it landed
        accepted = await c.accepted()
        nursery.cancel_scope.cancel()
    assert len(accepted) == 1
    designated = 1 % N
    assert c.submitted() == [int(i == designated) for i in range(N)]
    assert all(m.cp.counters["submit_failures"] == 0 for m in c.members)
    engine_cp = c.members[0].engine.withdrawal_trees.checkpoints()[-1]
    state = c.s.state()
    assert state.state_root == engine_cp.state_root and state.last_deposit_id == 1
    for m in c.members:
        view = m.cp.checkpoint(1)
        assert view is not None and view["landed"]
        assert view["submit_tx"] == "0x" + accepted[0].tx_hash.hex()
        assert len(view["signatures"]) >= THRESHOLD
    # The withdrawal of checkpoint 1 is claimable with the engine's proof.
    (w,) = engine_cp.withdrawals
    proof = c.members[2].engine.withdrawal_proof(1, w.withdrawal_id)
    assert proof is not None
    before = chain.w3.eth.get_balance(chain.w3.to_checksum_address(w.account))
    c.s.claim_withdrawal(chain.keys[0], 1, w.withdrawal_id, w.account, w.token, w.amount, proof[1])
    after = chain.w3.eth.get_balance(chain.w3.to_checksum_address(w.account))
    assert after - before == 10**18


async def test_next_member_takes_over_when_the_designated_submitter_is_absent(
    chain: Chain,
) -> None:
    c = make_committee(chain)
    c.absent = {1}  # the designated submitter of sequence 1
    async with trio.open_nursery() as nursery:
        await run_members(c, nursery)
        c.deposit(10**18)
        start = trio.current_time()
        c.checkpoint()
        await c.landed(1)
        elapsed = trio.current_time() - start
        await trio.sleep(0.3)
        accepted = await c.accepted()
        nursery.cancel_scope.cancel()
    assert len(accepted) == 1
    assert c.submitted() == [0, 0, 1, 0]  # rank 1 of sequence 1 is member 2
    assert elapsed >= TAKEOVER_S


async def test_a_member_with_a_different_root_refuses_and_alarms(chain: Chain) -> None:
    c = make_committee(chain)
    async with trio.open_nursery() as nursery:
        await run_members(c, nursery)
        c.deposit(2 * 10**18)
        c.withdraw(10**9, only=3)  # member 3's engine diverges
        c.checkpoint()
        await c.landed(1)
        odd = c.members[3].cp
        honest = c.members[:3]
        # The alarms arrive with the peers' signatures and the landed checkpoint: wait for
        # every one of them (a loaded machine delivers late, never differently), then check
        # that none came twice.
        with trio.fail_after(30):
            while (
                odd.counters["checkpoint_mismatch"] < 3
                or odd.counters["checkpoint_landed_mismatch"] < 1
                or any(m.cp.counters["checkpoint_mismatch"] < 1 for m in honest)
            ):
                await trio.sleep(0.05)
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    assert odd.counters["checkpoint_mismatch"] == 3  # one alarm per honest peer
    assert odd.counters["checkpoint_landed_mismatch"] == 1
    assert len(odd.history[1].signatures) == 1  # only its own: it counted none of theirs
    for m in c.members[:3]:
        assert m.cp.counters["checkpoint_mismatch"] == 1
        assert address_of(c.members[3].key) not in m.cp.history[1].signatures
        assert m.cp.counters["checkpoint_landed_mismatch"] == 0
    assert (
        c.s.state().state_root == c.members[0].engine.withdrawal_trees.checkpoints()[-1].state_root
    )


# ------------------------------------------------------------------ no chain


def _lone(sent: list[list[Any]]) -> tuple[Checkpointer, list[bytes]]:
    keys = member_keys()
    members = [address_of(k) for k in keys]
    cp = Checkpointer(
        members=members,
        me=0,
        key=keys[0],
        chain_id=31337,
        contract=b"\xcc" * 20,
        settlement=None,
        send_all=sent.append,
        threshold=THRESHOLD,
    )
    return cp, keys


def _engine_cp(sequence: int) -> EngineCheckpoint:
    return EngineCheckpoint(sequence, b"\x01" * 32, bytes(32), 4, ())


def _signed(
    key: bytes, cp: Checkpoint, chain_id: int = 31337, contract: bytes = b"\xcc" * 20
) -> list[Any]:
    return signature_message(cp, sign(key, checkpoint_digest(chain_id, contract, cp)))


async def test_forged_and_malformed_signatures_are_ignored() -> None:
    sent: list[list[Any]] = []
    cp, keys = _lone(sent)
    cp.on_checkpoint(_engine_cp(1))
    await cp.tick()  # no chain: just sends what is unsent
    assert len(sent) == 1 and sent[0][0] == "cps"
    ours = Checkpoint(0, 1, b"\x01" * 32, bytes(32), 4)
    outsider = keccak(b"not a member")
    bad = SignatureResult.BAD_SIGNATURE
    assert cp.on_peer_signature(1, _signed(outsider, ours)) is bad
    assert cp.on_peer_signature(1, _signed(keys[2], ours)) is bad  # member 2's, sent as 1's
    assert cp.on_peer_signature(1, _signed(keys[1], ours, chain_id=1)) is bad
    assert cp.on_peer_signature(1, _signed(keys[1], ours, contract=b"\xdd" * 20)) is bad
    malformed = SignatureResult.MALFORMED
    assert cp.on_peer_signature(1, ["cps", 1]) is malformed
    assert cp.on_peer_signature(1, [*_signed(keys[1], ours)[:6], b"short"]) is malformed
    assert cp.on_peer_signature(0, _signed(keys[0], ours)) is malformed  # "from" ourselves
    assert cp.on_peer_signature(9, _signed(keys[1], ours)) is malformed
    assert cp.pending[1].quorum_at is None and len(cp.pending[1].signatures) == 1
    assert cp.counters["checkpoint_bad_signature"] == 4
    assert cp.on_peer_signature(1, _signed(keys[1], ours)) is SignatureResult.ACCEPTED
    assert cp.on_peer_signature(1, _signed(keys[1], ours)) is SignatureResult.DUPLICATE
    assert cp.pending[1].quorum_at is None
    assert cp.on_peer_signature(3, _signed(keys[3], ours)) is SignatureResult.ACCEPTED
    assert cp.pending[1].quorum_at is not None
    assert cp.counters["checkpoint_mismatch"] == 0


async def test_early_signatures_wait_for_our_checkpoint() -> None:
    sent: list[list[Any]] = []
    cp, keys = _lone(sent)
    second = Checkpoint(0, 2, b"\x01" * 32, bytes(32), 4)
    assert cp.on_peer_signature(2, _signed(keys[2], second)) is SignatureResult.EARLY
    far = Checkpoint(0, 50, b"\x01" * 32, bytes(32), 4)
    assert cp.on_peer_signature(2, _signed(keys[2], far)) is SignatureResult.STALE
    cp.on_checkpoint(_engine_cp(1))
    cp.on_checkpoint(_engine_cp(2))
    assert address_of(keys[2]) in cp.pending[2].signatures
    other = Checkpoint(0, 1, b"\x02" * 32, bytes(32), 4)
    assert cp.on_peer_signature(3, _signed(keys[3], other)) is SignatureResult.MISMATCH
    assert cp.counters["checkpoint_mismatch"] == 1
    assert [v["sequence"] for v in cp.checkpoints()] == [1, 2]
