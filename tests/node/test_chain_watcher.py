"""The chain watcher on py-evm and anvil: confirmations, reorgs, ordering, payload entries.

Each test deploys its own Settlement on a chain shared by the module (one anvil process).
Reorgs are simulated by reverting to a snapshot and mining a different chain on top.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgpack
import pytest

from contracts import chain as chains
from contracts.chain import Chain, local_chain
from contracts.settlement import ETH, Erc20, Settlement, TokenConfig, deploy
from contracts.signing import address_of
from matching.config import Asset
from matching.config import Genesis as ExchangeGenesis
from matching.engine import Engine
from matching.events import Deposited, Rejected
from node.chain.watcher import ChainWatcher, WatcherOptions, map_deposit
from node.payload import (
    VOID_ASSET,
    BadEntry,
    DepositRecord,
    decode_deposit,
    deposit_engine_entry,
    deposit_entry,
)

ETH_UNIT = 10**9
TOKEN_UNIT = 10**12
CONFIRMATIONS = 3


def mine(chain: Chain, blocks: int) -> None:
    if isinstance(chain, chains.TesterChain):
        chain._tester.mine_blocks(blocks)
    else:
        assert isinstance(chain, chains.AnvilChain)
        chain.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


@dataclass
class Setup:
    chain: Chain
    s: Settlement
    token: bytes
    users: list[bytes]
    assets: tuple[Asset, ...]

    def watcher(self, confirmations: int = CONFIRMATIONS) -> ChainWatcher:
        options = WatcherOptions(confirmations=confirmations, poll_interval_s=0.01)
        return ChainWatcher(self.s, self.assets, options)


@pytest.fixture(scope="module", params=["py-evm", "anvil"])
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    with local_chain(request.param) as c:
        yield c


@pytest.fixture
def setup(chain: Chain) -> Setup:
    deployer = chain.keys[0]
    token = deploy(chain.w3, deployer, "TestToken", "Test USD", "TUSD", 18)
    members = sorted(address_of(bytes([i + 1]) * 32) for i in range(4))
    tokens = [TokenConfig(ETH, ETH_UNIT), TokenConfig(token, TOKEN_UNIT)]
    s = Settlement.deploy(chain.w3, deployer, members, 3, tokens, 3600)
    users = chain.keys[1:3]
    for u in users:
        Erc20(chain.w3, token).mint(deployer, address_of(u), 10**24)
    assets = (Asset(0, "ETH", ETH, ETH_UNIT), Asset(7, "TUSD", token, TOKEN_UNIT))
    return Setup(chain, s, token, users, assets)


async def test_reports_a_deposit_only_after_n_confirmations(setup: Setup) -> None:
    w = setup.watcher()
    user = address_of(setup.users[0])
    setup.s.deposit_eth(setup.users[0], 3 * 10**18)  # the deposit's block: 1 confirmation
    await w.poll()
    assert w.seen(1) is None
    mine(setup.chain, CONFIRMATIONS - 2)
    await w.poll()
    assert w.seen(1) is None and w.next_deposits(0, 10) == []
    mine(setup.chain, 1)
    assert await w.poll() == 1
    assert w.seen(1) == DepositRecord(1, user, ETH, 3 * 10**18, 0, 3 * 10**9)
    setup.s.deposit_token(setup.users[1], setup.token, 5 * TOKEN_UNIT)
    mine(setup.chain, CONFIRMATIONS - 1)
    await w.poll()
    assert w.seen(2) == DepositRecord(
        2, address_of(setup.users[1]), setup.token, 5 * TOKEN_UNIT, 7, 5
    )
    assert w.status()["pending_deposits"] == 2


async def test_reorg_below_the_confirmation_depth_is_never_seen(setup: Setup) -> None:
    w = setup.watcher()
    chain = setup.chain
    snap = chain.snapshot()
    setup.s.deposit_eth(setup.users[0], 10**18)  # id 1 on the branch that will vanish
    mine(chain, CONFIRMATIONS - 2)
    await w.poll()
    assert w.seen(1) is None
    chain.revert(snap)
    setup.s.deposit_eth(setup.users[1], 2 * 10**18)  # id 1 again, other data
    mine(chain, CONFIRMATIONS - 1)
    await w.poll()
    assert w.seen(1) == DepositRecord(1, address_of(setup.users[1]), ETH, 2 * 10**18, 0, 2 * 10**9)
    assert w.counters["deep_reorg"] == 0 and w.counters["deposit_conflict"] == 0


async def test_reorg_deeper_than_the_depth_raises_the_alarm_and_rescans(setup: Setup) -> None:
    w = setup.watcher(confirmations=2)
    chain = setup.chain
    mine(chain, 2)
    await w.poll()
    snap = chain.snapshot()
    setup.s.deposit_eth(setup.users[0], 10**18)
    mine(chain, 3)
    await w.poll()
    assert w.seen(1) is not None
    chain.revert(snap)  # outside the model: a confirmed deposit disappears
    setup.s.deposit_eth(setup.users[1], 2 * 10**18)
    mine(chain, 4)
    await w.poll()  # detects the fork, rewinds
    assert w.counters["deep_reorg"] == 1
    assert w.seen(1) is None
    await w.poll()
    record = w.seen(1)
    assert record is not None and record.account == address_of(setup.users[1])


async def test_deposits_come_out_in_id_order_and_are_pruned_once_applied(setup: Setup) -> None:
    w = setup.watcher(confirmations=1)
    for i in range(5):
        setup.s.deposit_eth(setup.users[i % 2], (i + 1) * 10**18)
    mine(setup.chain, 1)
    await w.poll()
    assert [r.deposit_id for r in w.next_deposits(0, 3)] == [1, 2, 3]
    assert w.next_deposits(0, 3, min_age_s=60) == []  # too fresh for a cautious leader
    assert [r.engine_amount for r in w.next_deposits(3, 10)] == [4 * 10**9, 5 * 10**9]
    w.applied(3)
    assert w.seen(3) is None and w.seen(4) is not None
    assert [r.deposit_id for r in w.next_deposits(3, 10)] == [4, 5]
    assert w.next_deposits(5, 10) == []


async def test_a_token_genesis_does_not_list_is_consumed_but_credits_nothing(
    setup: Setup,
) -> None:
    only_eth = setup.assets[:1]
    w = ChainWatcher(setup.s, only_eth, WatcherOptions(confirmations=1))
    setup.s.deposit_token(setup.users[0], setup.token, TOKEN_UNIT)
    await w.poll()
    record = w.seen(1)
    assert record is not None and record.asset == VOID_ASSET and record.engine_amount == 0
    assert w.counters["deposits_void"] == 1


async def test_an_unreachable_chain_is_logged_not_raised(setup: Setup) -> None:
    from web3 import HTTPProvider, Web3

    dead = Settlement.__new__(Settlement)
    dead.w3 = Web3(HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 1}))
    dead.address = setup.s.address
    w = ChainWatcher(dead, setup.assets, WatcherOptions(confirmations=1))
    assert await w.poll() == 0
    assert w.counters["poll_errors"] == 1


# ------------------------------------------------------------------ pure parts


def test_map_deposit_voids_what_genesis_cannot_credit() -> None:
    token = b"\x11" * 20
    assets = (Asset(0, "ETH", ETH, ETH_UNIT), Asset(1, "T", token, 100))
    account = b"\x22" * 20
    assert map_deposit(1, account, token, 500, assets) == (
        DepositRecord(1, account, token, 500, 1, 5),
        None,
    )
    for bad_token, amount in ((b"\x33" * 20, 500), (token, 501), (token, 100 << 64)):
        record, problem = map_deposit(2, account, bad_token, amount, assets)
        assert problem is not None
        assert record.asset == VOID_ASSET and record.engine_amount == 0


def test_deposit_entry_round_trip_and_canonical_form() -> None:
    record = DepositRecord(9, b"\x01" * 20, ETH, 5 * 10**27, 0, 5 * 10**18)
    entry = deposit_entry(record)
    assert entry[0] == 0x02
    assert decode_deposit(entry) == record
    fields = msgpack.unpackb(entry[1:])
    for bad in (
        b"\x01" + entry[1:],  # an intent tag
        b"\x02" + msgpack.packb([*fields, 1]),  # extra field
        b"\x02" + msgpack.packb([fields[0], *fields[1:3], b"\x05", *fields[4:]]),  # short amount
        b"\x02" + msgpack.packb([0, *fields[1:]]),  # deposit id 0
        b"\x02\xc1",  # not msgpack
        entry + b"\x00",  # trailing bytes
    ):
        with pytest.raises(BadEntry):
            decode_deposit(bad)


def test_deposit_engine_entry_credits_the_engine() -> None:
    account = b"\x44" * 20
    engine = Engine(ExchangeGenesis((Asset(0, "ETH", ETH, ETH_UNIT),), (), account))
    good = DepositRecord(1, account, ETH, 2 * 10**18, 0, 2 * 10**9)
    void = DepositRecord(2, account, b"\x55" * 20, 7, VOID_ASSET, 0)
    result = engine.apply_block(1, [deposit_engine_entry(good), deposit_engine_entry(void)])
    assert isinstance(result.events[0][0], Deposited)
    assert isinstance(result.events[1][0], Rejected)
    assert engine.balance(account, 0) == (2 * 10**9, 0)
    assert engine.last_deposit_id == 2


def test_deposit_entry_vector_of_protocol_section_7() -> None:
    account = bytes.fromhex("2c7536e3605d9c16a7a3d7b1898e529396a65c23")
    record = DepositRecord(1, account, ETH, 2 * 10**18, 0, 2 * 10**9)
    assert deposit_entry(record).hex() == (
        "029601c4142c7536e3605d9c16a7a3d7b1898e529396a65c23c414000000000000000000000000000000"
        "0000000000c4200000000000000000000000000000000000000000000000001bc16d674ec8000000ce7735"
        "9400"
    )
