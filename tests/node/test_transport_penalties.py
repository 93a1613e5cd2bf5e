"""`penalize` and bans (node/net/penalties.py): scores that decay, a ban past the
threshold, a back-off that doubles on each repeat. The ledger alone on explicit times,
then a Transport over memory streams on a MockClock, then two Transports on loopback."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from node.net.framing import pack
from node.net.handshake import HandshakeError
from node.net.penalties import Ban, PenaltyLedger
from node.net.transport import BANNED, Transport, TransportConfig
from tests.node.test_transport import bind, committee, meshed, port_of, wait_until
from tests.node.test_transport_framing import GENESIS, KEYS, MAX, PEERS, connect_member, drain

DEFAULTS = TransportConfig()


def ledger() -> PenaltyLedger:
    return PenaltyLedger(
        points=DEFAULTS.penalty_points,
        ban_score=DEFAULTS.ban_score,
        decay_per_s=DEFAULTS.penalty_decay_per_s,
        ban_initial_s=DEFAULTS.ban_initial_s,
        ban_max_s=DEFAULTS.ban_max_s,
    )


def faults(book: PenaltyLedger, peer: int, count: int, now: float) -> list[Ban | None]:
    return [book.penalize(peer, now) for _ in range(count)]


# -- the ledger alone --------------------------------------------------------------------


def test_defaults_ban_ten_quick_faults_and_never_one_now_and_then() -> None:
    book = ledger()
    assert faults(book, 1, 9, 0.0) == [None] * 9
    assert book.score(1, 0.0) == 90 and not book.is_banned(1, 0.0)
    assert book.penalize(1, 0.0) == Ban(10.0, 1)
    assert book.is_banned(1, 9.9) and not book.is_banned(1, 10.0)
    # An honest member with one bad message every 11 s, for a day: never banned.
    honest = ledger()
    assert all(honest.penalize(2, 11.0 * i) is None for i in range(8000))
    assert honest.score(2, 8000 * 11.0) < DEFAULTS.penalty_points


def test_score_decays_with_time() -> None:
    book = ledger()
    faults(book, 1, 9, 0.0)
    assert book.score(1, 5.0) == 85
    assert book.penalize(1, 5.0) is None  # 85 + 10 = 95: under the threshold
    assert book.score(1, 200.0) == 0
    assert book.score(7, 0.0) == 0  # never penalized


def test_faults_during_a_ban_add_nothing_and_the_score_restarts_after() -> None:
    book = ledger()
    faults(book, 1, 10, 0.0)
    assert faults(book, 1, 50, 5.0) == [None] * 50
    assert book.score(1, 10.0) == 0
    assert faults(book, 1, 9, 10.0) == [None] * 9


def test_repeated_bans_double_up_to_the_maximum_and_a_long_clean_stretch_forgives() -> None:
    book = ledger()
    now = 0.0
    durations = []
    for _ in range(8):
        ban = faults(book, 1, 10, now)[-1]
        assert ban is not None
        durations.append(ban.duration_s)
        now = book.banned_until(1)
    assert durations == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]
    later = now + 2 * DEFAULTS.ban_max_s + 1
    assert faults(book, 1, 10, later)[-1] == Ban(10.0, 1)


def test_members_are_scored_separately() -> None:
    book = ledger()
    faults(book, 1, 10, 0.0)
    assert book.is_banned(1, 0.0) and not book.is_banned(2, 0.0)
    assert book.banned_until(2) == -math.inf


# -- a transport over memory streams -------------------------------------------------------


async def test_penalize_bans_past_the_threshold_and_refuses_the_member_until_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = TransportConfig(max_frame_bytes=MAX)
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            peer = await connect_member(nursery, transport, 1)
            await connect_member(nursery, transport, 2)
            await peer.send_frames(*(pack(["junk", i]) for i in range(5)))
            await trio.sleep(0.1)
            for _ in range(9):
                transport.penalize(1, "PeerProtocolError: junk")
            stats = transport.stats().peers[1]
            assert stats.connected and stats.penalties == 9 and stats.score == 90
            transport.penalize(2, "one bad message")  # another member, its own score
            transport.penalize(1, "PeerProtocolError: junk")
            await peer.expect_closed()
            stats = transport.stats()
            assert stats.peers[1].bans == 1 and stats.peers[1].banned
            assert stats.peers[1].inbound_bytes == 0  # what it had waiting is dropped
            assert transport.connected_peers() == {2}
            assert not stats.peers[2].banned and stats.peers[2].score == 10

            # While banned it is refused in the handshake, before we sign anything.
            with pytest.raises(HandshakeError, match="closed the connection"):
                await connect_member(nursery, transport, 1)
            assert transport.stats().refusals[BANNED] == 1
            assert transport.stats().handshakes_rejected == 0  # policy, not a failure

            await trio.sleep(config.ban_initial_s)
            peer = await connect_member(nursery, transport, 1)  # the ban is over
            await trio.sleep(0.1)
            assert 1 in transport.connected_peers()
            assert transport.stats().peers[1].score == 0
            for _ in range(10):
                transport.penalize(1, "again")
            await peer.expect_closed()
            banned_at = trio.current_time()
            await trio.sleep(config.ban_initial_s)
            with pytest.raises(HandshakeError):  # the second ban lasts twice as long
                await connect_member(nursery, transport, 1)
            await trio.sleep(banned_at + 2 * config.ban_initial_s - trio.current_time())
            await connect_member(nursery, transport, 1)
            nursery.cancel_scope.cancel()
    bans = [e for e in logs if e["event"] == "peer_banned"]
    assert [(e["peer"], e["ban_s"], e["streak"]) for e in bans] == [(1, 10.0, 1), (1, 20.0, 2)]
    assert bans[0]["last_reason"] == "PeerProtocolError: junk"
    assert bans[0]["dropped_messages"] == 5


async def test_a_member_that_sends_only_garbage_is_banned_quickly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each undecodable frame costs the member its connection and a penalty; it redials
    at once, as a transport does, until the ban refuses it."""
    config = TransportConfig(max_frame_bytes=MAX)
    transport = Transport(0, KEYS[0], PEERS, GENESIS, config)
    attempts = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, transport)
        with trio.fail_after(1):
            while True:
                try:
                    peer = await connect_member(nursery, transport, 1)
                except HandshakeError:
                    break
                attempts += 1
                await peer.send_frames(b"\xc1")
                await peer.expect_closed()
        stats = transport.stats().peers[1]
        assert attempts == DEFAULTS.ban_score / DEFAULTS.penalty_points == 10
        assert stats.protocol_errors == 10 and stats.bans == 1 and stats.banned
        nursery.cancel_scope.cancel()


async def test_an_occasional_bad_message_never_bans_an_honest_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = Transport(0, KEYS[0], PEERS, GENESIS, TransportConfig(max_frame_bytes=MAX))
    async with trio.open_nursery() as nursery:
        peer = await connect_member(nursery, transport, 1)
        for i in range(100):
            await peer.send_frames(pack(["vote", i]))
            assert await transport.inbound.receive() == (1, ["vote", i])
            if i % 10 == 0:  # one message in ten is bad, one every 11 s
                transport.penalize(1, "a message the boundary refused")
            await trio.sleep(1.1)
        stats = transport.stats().peers[1]
        assert stats.penalties == 10 and stats.bans == 0 and stats.connected
        nursery.cancel_scope.cancel()


async def test_penalizing_myself_or_an_unknown_id_is_ignored() -> None:
    transport = Transport(0, KEYS[0], PEERS, GENESIS)
    transport.penalize(0, "me")
    transport.penalize(99, "nobody")
    assert all(s.penalties == 0 for s in transport.stats().peers.values())


# -- two transports on loopback ------------------------------------------------------------


async def test_a_ban_holds_both_ways_and_the_link_returns_after_it() -> None:
    config = TransportConfig(
        handshake_timeout_s=2.0,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        ban_initial_s=0.5,
        ban_max_s=1.0,
    )
    listeners = await bind(2)
    peers = committee([port_of(ls) for ls in listeners])
    transports = [
        Transport(i, KEYS[i], peers, GENESIS, config, listeners=listeners[i]) for i in range(2)
    ]
    judge, culprit = transports
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for transport in transports:
                await nursery.start(transport.run)
            await wait_until(meshed(transports))
            for _ in range(10):
                judge.penalize(1, "garbage")
            banned_at = trio.current_time()
            await wait_until(lambda: judge.connected_peers() == frozenset())
            # The culprit redials and is refused; the judge does not dial it.
            await wait_until(lambda: judge.stats().refusals[BANNED] >= 2)
            assert judge.stats().peers[1].connects == 1
            assert judge.stats().peers[1].dial_failures == 0
            await wait_until(meshed(transports))
            assert trio.current_time() - banned_at >= config.ban_initial_s
            # Once the ban ends both sides may dial at once: the newer link replaces the
            # other, so the judge counts one or two connects more.
            assert judge.stats().peers[1].connects in (2, 3)
            assert not judge.stats().peers[1].banned
            culprit.send(0, "back")
            assert await judge.inbound.receive() == (1, "back")
            nursery.cancel_scope.cancel()


def test_the_score_leaks_in_whole_points_at_the_configured_rate() -> None:
    book = ledger()
    for i in range(10):  # a burst over real time: microseconds apart, still ten faults
        ban = book.penalize(1, 1000.0 + i * 1e-6)
    assert ban == Ban(10.0, 1)
    slow = ledger()
    slow.penalize(2, 0.0)
    assert [slow.score(2, t) for t in (0.4, 0.99, 1.0)] == [10, 10, 9]
    slow.penalize(2, 1.5)  # leaks the one whole point, keeps the half still leaking
    assert slow.score(2, 1.5) == 19
    assert slow.score(2, 2.0) == 18  # the carried half second makes a point here
