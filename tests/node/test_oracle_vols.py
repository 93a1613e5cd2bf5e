"""Implied-vol observations (payload tag 0x06): the committee's `vols` entries, signed by
each member's feeder like its price observations (node/oracle/), checked by voters, and
taken by the engine's mark-vol rule (matching/optionmarkets.py)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from consensus.crypto import Ed25519Scheme
from matching.config import Genesis
from matching.options import MAX_VOL_E9
from node.config import OracleSettings, VolSettings, load_node_config
from node.net.messages import OracleObservation, decode_peer_message
from node.oracle.feeder import Feeder, ObservationPool, VolFeed
from node.oracle.member import vol_converter, vol_feed
from node.oracle.observation import (
    PRICES,
    TAG_VOLS,
    VOLS,
    BadObservation,
    Observation,
    block_observations,
    decode_observation,
    sign_observation,
)
from node.oracle.sources import SimulatedSource
from tests.matching.option_helpers import C50, P50, OptionHarness, option_genesis_dict
from tests.matching.perp_helpers import MEMBERS
from tests.node.test_oracle import CHAIN, KEYS, SIGNERS, T, observe


def observe_vols(member: int, at_ms: int = T, vols: dict[int, int] | None = None) -> Observation:
    return sign_observation(SIGNERS[member], CHAIN, member, at_ms, vols or {C50: 650_000_000}, VOLS)


def test_a_vol_observation_round_trips_under_its_own_tag_and_domain() -> None:
    o = observe_vols(1, vols={P50: 700_000_000, C50: 650_000_000})
    assert o.entry()[0] == TAG_VOLS
    assert o.prices == ((C50, 650_000_000), (P50, 700_000_000))
    assert decode_observation(o.entry()) == o
    assert o.verify(CHAIN, KEYS[1], Ed25519Scheme())
    # The same member, time and pairs as a price observation: another signed message,
    # so no one can pass a member's vol for a price or the reverse.
    as_price = dataclasses.replace(o, kind=PRICES)
    assert as_price.signing_bytes(CHAIN) != o.signing_bytes(CHAIN)
    assert not as_price.verify(CHAIN, KEYS[1], Ed25519Scheme())
    assert o.engine_entry(MEMBERS[1]) == {
        "action": {
            "type": "vols",
            "member": MEMBERS[1],
            "vols": [[C50, 650_000_000], [P50, 700_000_000]],
        }
    }
    assert decode_peer_message(["o", o.entry()]) == OracleObservation(o)


def test_a_vol_is_in_the_engines_range() -> None:
    assert observe_vols(0, vols={C50: MAX_VOL_E9}).prices == ((C50, MAX_VOL_E9),)
    with pytest.raises(BadObservation, match="vol"):
        observe_vols(0, vols={C50: MAX_VOL_E9 + 1})
    with pytest.raises(BadObservation, match="vol"):
        observe_vols(0, vols={C50: 0})
    # A price may be larger than any vol: the range is the kind's.
    big = observe(0, prices={C50: MAX_VOL_E9 + 1})
    forged_as_vol = bytes((TAG_VOLS,)) + big.entry()[1:]
    with pytest.raises(BadObservation, match="vol"):
        decode_observation(forged_as_vol)


def test_a_voter_takes_one_observation_of_each_kind_per_member_first() -> None:
    def check(entries: list[bytes], at_ms: int = T) -> str | None:
        return block_observations(entries, at_ms, KEYS, CHAIN, Ed25519Scheme())

    prices = [observe(i).entry() for i in range(4)]
    vols = [observe_vols(i).entry() for i in range(4)]
    intent = b"\x01intent"
    assert check([*prices, *vols, intent]) is None
    assert check([vols[2], prices[0], intent]) is None
    assert "two observations" in (check([vols[0], observe_vols(0, T + 1).entry()]) or "")
    assert "first" in (check([prices[0], intent, vols[1]]) or "")
    forged = dataclasses.replace(decode_observation(vols[1]), member=2).entry()
    assert "bad signature" in (check([forged]) or "")


def test_the_pool_keeps_the_newest_of_each_kind_and_proposes_prices_first() -> None:
    pool = ObservationPool(4)
    assert pool.offer(observe_vols(1))
    assert pool.offer(observe(1))  # another kind: both kept
    assert not pool.offer(observe_vols(1))
    assert pool.offer(observe_vols(2, T + 1))
    taken = pool.take(T + 10, max_age_ms=5_000)
    assert [(o.kind, o.member) for o in taken] == [(PRICES, 1), (VOLS, 1), (VOLS, 2)]
    assert pool.take(T + 10, max_age_ms=5_000) == []
    pool.offer(observe_vols(3, T + 20))
    pool.carried(3, T + 20, VOLS)  # another leader's block carried it
    assert pool.take(T + 30, max_age_ms=5_000) == []
    assert [o is not None for o in pool.latest(VOLS)] == [False, True, True, True]


def test_vol_converter_rounds_and_refuses_out_of_range() -> None:
    convert = vol_converter(C50)
    assert convert(Decimal("0.55")) == (C50, 550_000_000)
    assert convert(Decimal("0.1234567895")) == (C50, 123_456_790)
    assert convert(Decimal(10)) == (C50, MAX_VOL_E9)
    assert convert(Decimal("10.000000001")) is None
    assert convert(Decimal("0.0000000001")) is None


async def test_the_feeder_publishes_signed_vols_beside_prices() -> None:
    published: list[Observation] = []
    genesis = Genesis.from_dict(option_genesis_dict())
    settings = OracleSettings(vols=VolSettings(start={"BTC-C50000": "0.65"}))
    feed = vol_feed(settings, genesis)
    assert feed is not None and set(feed.to_vol_e9) == {m.symbol for m in genesis.option_markets}
    feeder = Feeder(
        member=2,
        chain_id=CHAIN,
        signer=SIGNERS[2],
        source=SimulatedSource({"BTC-PERP": Decimal(50_000)}),
        to_ticks={"BTC-PERP": lambda p: (2, int(p))},
        now_ms=lambda: T,
        publish=published.append,
        vols=feed,
    )
    price = await feeder.observe_once()
    vols = await feeder.observe_vols_once()
    assert price is not None and vols is not None and published == [price, vols]
    assert vols.kind is VOLS and vols.member == 2
    assert vols.verify(CHAIN, KEYS[2], Ed25519Scheme())
    by_market = dict(vols.prices)
    assert set(by_market) == {m.id for m in genesis.option_markets}
    # The simulated source moves around its start: the genesis 80 %, or the configured 65 %.
    assert 600_000_000 < by_market[C50] < 700_000_000
    assert 750_000_000 < by_market[P50] < 850_000_000
    assert feeder.vol_observations == 1


async def test_a_failing_vol_source_publishes_nothing() -> None:
    published: list[Observation] = []

    class Down:
        async def prices(self, now_ms: int) -> dict[str, Decimal]:
            raise RuntimeError("vol service down")

    feeder = Feeder(
        member=0,
        chain_id=CHAIN,
        signer=SIGNERS[0],
        source=SimulatedSource({"BTC-PERP": Decimal(50_000)}),
        to_ticks={"BTC-PERP": lambda p: (2, int(p))},
        now_ms=lambda: T,
        publish=published.append,
        vols=VolFeed(Down(), {"BTC-C50000": vol_converter(C50)}),
    )
    assert await feeder.observe_vols_once() is None
    assert published == [] and feeder.vol_failures == 1


async def test_more_series_than_an_observation_holds_go_in_turns() -> None:
    published: list[Observation] = []
    series = {f"S{i}": vol_converter(100 + i) for i in range(150)}
    feeder = Feeder(
        member=0,
        chain_id=CHAIN,
        signer=SIGNERS[0],
        source=SimulatedSource({"BTC-PERP": Decimal(50_000)}),
        to_ticks={"BTC-PERP": lambda p: (2, int(p))},
        now_ms=lambda: T,
        publish=published.append,
        vols=VolFeed(SimulatedSource({s: Decimal("0.5") for s in series}), series),
    )
    for _ in range(4):
        assert await feeder.observe_vols_once() is not None
    markets = [[m for m, _ in o.prices] for o in published]
    assert [len(m) for m in markets] == [64, 64, 22, 64]
    assert sorted(markets[0] + markets[1] + markets[2]) == list(range(100, 250))
    assert markets[3] == markets[0]
    assert all(decode_observation(o.entry()) == o for o in published)


def test_no_option_series_no_vol_feed() -> None:
    from tests.matching.perp_helpers import perp_genesis_dict

    assert vol_feed(OracleSettings(), Genesis.from_dict(perp_genesis_dict())) is None


def test_the_oracle_vols_table_parses_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "vols.json").write_text("{}")
    text = (
        'name = "node0"\ngenesis = "genesis.toml"\ndata_dir = "data"\n'
        'identity_key = "id.key"\nsettlement_key = "s.key"\n'
        '[listen]\nconsensus = "127.0.0.1:9000"\napi = "127.0.0.1:8000"\n'
        '[oracle]\nsource = "simulated"\nstart = { "BTC-PERP" = "97000" }\n'
        '[oracle.vols]\nsource = "file"\nfile = "vols.json"\n'
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_node_config(path)
    assert config.oracle.vols == VolSettings(source="file", file=tmp_path / "vols.json")
    config.write(tmp_path / "again.toml")
    assert load_node_config(tmp_path / "again.toml").oracle == config.oracle
    path.write_text(text.replace('source = "file"', 'start = { "X" = "11" }'))
    with pytest.raises(Exception, match="vol"):
        load_node_config(path)


def test_committed_vol_observations_set_the_engines_committee_vol() -> None:
    """The observation's engine entry is what the engine's `vols` rule takes: with 3 of 4
    members (the quorum) the committee vol is their median, and the mark follows it."""
    h = OptionHarness()
    h.fund()
    h.index()
    options = h.engine.options
    assert options is not None
    before = options.series[C50].mark
    entries = [
        sign_observation(SIGNERS[i], CHAIN, i, T, {C50: vol}, VOLS).engine_entry(MEMBERS[i])
        for i, vol in enumerate((900_000_000, 1_000_000_000, 5_000_000_000))
    ]
    result = h.block(entries)
    assert not any(type(e).__name__ == "Rejected" for es in result.events for e in es)
    h.index()
    assert options.series[C50].committee_vol == 1_000_000_000  # the median of three
    assert options.series[C50].mark > before
    assert options.series[P50].committee_vol == 800_000_000  # none observed: genesis


def test_protocol_vector() -> None:
    """docs/PROTOCOL.md §7.4."""
    from consensus.crypto import Ed25519Signer

    signer = Ed25519Signer(bytes(range(32)))
    o = sign_observation(
        signer, CHAIN, 2, 1_800_000_000_000, {21: 650_000_000, 20: 1_250_000_000}, VOLS
    )
    assert o.signing_bytes(CHAIN).hex() == (
        "95ae7365716e65742f766f6c732f7631c420"
        + "11" * 32
        + "02cf000001a3185c5000929214ce4a817c809215ce26be3680"
    )
    assert o.entry().hex() == (
        "069402cf000001a3185c5000929214ce4a817c809215ce26be3680c440"
        "b555c78dece08ae04641af32f8cadba612f1162b96e63a7658dd0197ecf1b0f5"
        "d0851fd5a4144cc1e1a22c742c2cadcafbe1af9274a923b02f4d5eb5fb5db60a"
    )


async def test_more_markets_than_an_observation_holds_go_in_turns() -> None:
    """Prices as vols: 100 perp markets are observed 64, then 36, then 64 again (one
    observation of all of them would be refused by every voter as too large)."""
    published: list[Observation] = []
    symbols = [f"P{i}-PERP" for i in range(100)]
    feeder = Feeder(
        member=0,
        chain_id=CHAIN,
        signer=SIGNERS[0],
        source=SimulatedSource({s: Decimal(50_000) for s in symbols}),
        to_ticks={s: (lambda p, m=i + 1: (m, int(p))) for i, s in enumerate(symbols)},
        now_ms=lambda: T,
        publish=published.append,
    )
    for _ in range(3):
        assert await feeder.observe_once() is not None
    markets = [[m for m, _ in o.prices] for o in published]
    assert [len(m) for m in markets] == [64, 36, 64]
    assert sorted(markets[0] + markets[1]) == list(range(1, 101))
    assert all(decode_observation(o.entry()) == o for o in published)
