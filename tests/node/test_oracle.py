"""The node side of the oracle: signed observations (encoding, decoding, the voter's
checks of a block's observations), the pool, the sources, the feeder."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from consensus.crypto import Ed25519Scheme, Ed25519Signer
from node.net.messages import OracleObservation, PeerProtocolError, decode_peer_message
from node.oracle.feeder import Feeder, ObservationPool
from node.oracle.observation import (
    MAX_OBSERVED_MARKETS,
    OBSERVATION_SKEW_MS,
    BadObservation,
    Observation,
    block_observations,
    decode_observation,
    sign_observation,
)
from node.oracle.sources import FileSource, HttpMarket, HttpSource, SimulatedSource, parse_price

CHAIN = b"\x11" * 32
SIGNERS = [Ed25519Signer(bytes([i + 1]) * 32) for i in range(4)]
KEYS = tuple(s.public_key for s in SIGNERS)
T = 1_800_000_000_000


def observe(member: int, at_ms: int = T, prices: dict[int, int] | None = None) -> Observation:
    return sign_observation(SIGNERS[member], CHAIN, member, at_ms, prices or {0: 9_700_000})


def test_an_observation_round_trips_and_its_signature_covers_every_field() -> None:
    o = observe(2, prices={7: 5, 1: 3})
    assert o.prices == ((1, 3), (7, 5))  # markets ascending
    assert decode_observation(o.entry()) == o
    assert o.verify(CHAIN, KEYS[2], Ed25519Scheme())
    assert not o.verify(b"\x12" * 32, KEYS[2], Ed25519Scheme())  # another chain
    assert not o.verify(CHAIN, KEYS[1], Ed25519Scheme())  # another member's key
    for forged in (
        Observation(2, o.observed_ms + 1, o.prices, o.signature),
        Observation(2, o.observed_ms, ((1, 4), (7, 5)), o.signature),
        Observation(1, o.observed_ms, o.prices, o.signature),
    ):
        assert not forged.verify(CHAIN, KEYS[forged.member], Ed25519Scheme())


def test_engine_entry_names_the_member_address() -> None:
    entry = observe(0, prices={3: 10}).engine_entry(b"\xaa" * 20)
    assert entry == {"action": {"type": "oracle", "member": b"\xaa" * 20, "prices": [[3, 10]]}}


@pytest.mark.parametrize(
    "body",
    [
        [0, T, [], b"s" * 64],  # no price
        [0, T, [[1, 5], [1, 6]], b"s" * 64],  # a market twice
        [0, T, [[2, 5], [1, 6]], b"s" * 64],  # not ascending
        [0, T, [[1, 0]], b"s" * 64],  # price 0
        [0, T, [[1, -1]], b"s" * 64],
        [0, T, [[1, 1 << 63]], b"s" * 64],  # beyond int64
        [0, T, [[1 << 32, 1]], b"s" * 64],  # market id beyond u32
        [0, T, [[1, True]], b"s" * 64],
        [0, T, [[1]], b"s" * 64],
        [0, T, [1, 2], b"s" * 64],
        [0, T, [[1, 5]], b"s" * 63],  # short signature
        [300, T, [[1, 5]], b"s" * 64],  # no such member index
        [0, -1, [[1, 5]], b"s" * 64],
        [0, T, [[1, 5]]],  # 3 fields
        {"member": 0},
        [0, T, [[m, 1] for m in range(MAX_OBSERVED_MARKETS + 1)], b"s" * 64],
    ],
)
def test_malformed_observations_are_refused(body: object) -> None:
    entry = b"\x04" + msgpack.packb(body, use_bin_type=True)
    with pytest.raises(BadObservation):
        decode_observation(entry)
    with pytest.raises(PeerProtocolError):
        decode_peer_message(["o", entry])


def test_non_canonical_bytes_and_other_tags_are_refused() -> None:
    o = observe(0)
    with pytest.raises(BadObservation):
        decode_observation(b"\x01" + o.entry()[1:])
    # the same value with its time as a uint64 where msgpack's shortest form is shorter
    body = msgpack.packb([0, 5, [[1, 5]], b"s" * 64], use_bin_type=True)
    longer = body.replace(b"\x05", b"\xcf" + (5).to_bytes(8, "big"), 1)
    assert msgpack.unpackb(longer) == msgpack.unpackb(body)
    with pytest.raises(BadObservation, match="canonical"):
        decode_observation(b"\x04" + longer)
    with pytest.raises(BadObservation):
        decode_observation(b"\x04\xc1")  # not msgpack


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_bad_observation(data: bytes) -> None:
    try:
        o = decode_observation(b"\x04" + data)
    except BadObservation:
        return
    assert o.entry() == b"\x04" + data  # only the canonical form decodes


def test_peer_message_o_carries_a_decoded_observation() -> None:
    o = observe(3)
    assert decode_peer_message(["o", o.entry()]) == OracleObservation(o)


def check(entries: list[bytes], at_ms: int = T) -> str | None:
    return block_observations(entries, at_ms, KEYS, CHAIN, Ed25519Scheme())


def test_a_voter_takes_fresh_signed_observations_first_one_per_member() -> None:
    intent = b"\x01intent"
    good = [observe(i).entry() for i in range(4)]
    assert check([*good, intent]) is None
    assert check([intent]) is None
    assert check([]) is None
    assert "first" in (check([good[0], intent, good[1]]) or "")
    assert "two observations" in (check([good[0], observe(0, T + 1).entry()]) or "")
    assert "more than" in (check(good, T + OBSERVATION_SKEW_MS + 1) or "")
    assert check(good, T - OBSERVATION_SKEW_MS) is None
    forged = Observation(1, T, ((0, 1),), observe(1).signature).entry()
    assert "bad signature" in (check([forged]) or "")
    stranger = sign_observation(Ed25519Signer(b"\x09" * 32), CHAIN, 5, T, {0: 1}).entry()
    assert "no such member" in (check([stranger]) or "")
    assert check([b"\x04junk"]) is not None


def test_the_pool_keeps_each_members_newest_and_hands_it_out_once() -> None:
    pool = ObservationPool(4)
    assert pool.offer(observe(1, T))
    assert not pool.offer(observe(1, T))  # not newer
    assert not pool.offer(observe(1, T - 5))
    assert pool.offer(observe(2, T + 1))
    taken = pool.take(T + 10, max_age_ms=5_000)
    assert [o.member for o in taken] == [1, 2]
    assert pool.take(T + 10, max_age_ms=5_000) == []  # proposed already
    assert pool.offer(observe(1, T + 100))
    assert [o.observed_ms for o in pool.take(T + 100, 5_000)] == [T + 100]
    assert pool.offer(observe(3, T))
    assert pool.take(T + 10_000, max_age_ms=5_000) == []  # too old to propose


def test_parse_price() -> None:
    assert parse_price("97000.5") == Decimal("97000.5")
    assert parse_price(3) == Decimal(3)
    for bad in ("0", "-1", "nan", "inf", "x", None, True, [], {}):
        assert parse_price(bad) is None


async def test_the_simulated_source_is_a_function_of_time_and_seed() -> None:
    a = SimulatedSource({"BTC-PERP": Decimal(97_000)}, seed=7)
    b = SimulatedSource({"BTC-PERP": Decimal(97_000)}, seed=7)
    other = SimulatedSource({"BTC-PERP": Decimal(97_000)}, seed=8)
    now = T
    assert await a.prices(now) == await b.prices(now)
    assert await a.prices(now) != await other.prices(now)
    path = [(await a.prices(now + k * 60_000))["BTC-PERP"] for k in range(10)]
    assert len(set(path)) > 5  # it moves
    assert all(Decimal(90_000) < p < Decimal(104_000) for p in path)  # around the start


async def test_the_file_source_reads_prices_and_survives_a_bad_file(tmp_path: Path) -> None:
    file = tmp_path / "prices.json"
    source = FileSource(file)
    assert await source.prices(T) == {}  # absent
    file.write_text(json.dumps({"BTC-PERP": "97000.5", "ETH-PERP": 3500, "BAD": "x"}))
    assert await source.prices(T) == {"BTC-PERP": Decimal("97000.5"), "ETH-PERP": Decimal(3500)}
    file.write_text("{not json")
    assert await source.prices(T) == {}
    file.write_text(json.dumps({"BTC-PERP": "1" * 70_000}))  # larger than the bound
    assert await source.prices(T) == {}


async def test_the_http_source_reads_a_ticker_over_real_loopback_http() -> None:
    answers = {
        b"/btc": b'{"data": {"last": "97001.25"}}',
        b"/eth": b'{"price": 3500.5}',
        b"/bad": b"not json",
        b"/big": b'{"price": "' + b"1" * 300_000 + b'"}',
    }

    async def serve(stream: trio.SocketStream) -> None:
        request = await stream.receive_some(4096)
        path = request.split(b" ")[1]
        body = answers.get(path, b"")
        status = b"200 OK" if path in answers else b"404 Not Found"
        head = b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        await stream.send_all(head % len(body) + body)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        source = HttpSource(
            {
                "BTC-PERP": HttpMarket(f"{base}/btc", "data.last"),
                "ETH-PERP": HttpMarket(f"{base}/eth"),
                "BAD": HttpMarket(f"{base}/bad"),
                "BIG": HttpMarket(f"{base}/big"),
                "GONE": HttpMarket(f"{base}/gone"),
            }
        )
        prices = await source.prices(T)
        assert prices == {"BTC-PERP": Decimal("97001.25"), "ETH-PERP": Decimal("3500.5")}
        nursery.cancel_scope.cancel()


async def test_the_feeder_signs_and_publishes_what_its_source_says() -> None:
    published: list[Observation] = []

    class Flaky:
        calls = 0

        async def prices(self, now_ms: int) -> dict[str, Decimal]:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("ticker down")
            return {"BTC-PERP": Decimal("97000.5"), "OTHER": Decimal(1)}

    feeder = Feeder(
        member=1,
        chain_id=CHAIN,
        signer=SIGNERS[1],
        source=Flaky(),
        to_ticks={"BTC-PERP": lambda p: (0, int(p * 10))},
        now_ms=lambda: T,
        publish=published.append,
    )
    first = await feeder.observe_once()
    assert first is not None and first.prices == ((0, 970_005),)
    assert first.verify(CHAIN, KEYS[1], Ed25519Scheme())
    assert await feeder.observe_once() is None  # the source failed: nothing published
    assert published == [first] and feeder.failures == 1


def test_protocol_vector() -> None:
    """docs/PROTOCOL.md §7.3."""
    signer = Ed25519Signer(bytes(range(32)))
    o = sign_observation(signer, CHAIN, 2, 1_800_000_000_000, {7: 9_700_050, 3: 350_000})
    assert signer.public_key.hex() == (
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    )
    assert o.signing_bytes(CHAIN).hex() == (
        "95b07365716e65742f6f7261636c652f7631c420"
        + "11" * 32
        + "02cf000001a3185c5000929203ce000557309207ce009402d2"
    )
    assert o.entry().hex() == (
        "049402cf000001a3185c5000929203ce000557309207ce009402d2c440"
        "39750c961bb633fe77104336d2fc7616335d163f96273009882a4edab111dd46"
        "f3c1d1c2ed3606595f6b0a5a319e02c9a7cdcdcb6441e2c02ad41b16e6aa0d09"
    )
