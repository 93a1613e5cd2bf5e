"""The peer handshake (node/net/handshake.py) over memory streams: who gets in, who does not.

The test vector here is the one in docs/PROTOCOL.md §6.4.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import pytest
import trio
import trio.testing
from nacl.signing import SigningKey

from node.net.framing import RecordCipher, encode_frame, pack
from node.net.handshake import (
    INITIATOR,
    HandshakeAbandoned,
    HandshakeError,
    HandshakeRefused,
    Hello,
    Identity,
    Session,
    auth_message,
    encode_auth,
    initiate,
    respond,
    transcript_hash,
)

GENESIS = b"\x47" * 32
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
MEMBERS = {i: key.verify_key for i, key in enumerate(KEYS)}
TIMEOUT_S = 5.0


def identity(me: int, genesis: bytes = GENESIS, seal: bool = True) -> Identity:
    return Identity(me, KEYS[me], MEMBERS, genesis, seal)


def fixed_rng(*chunks: bytes) -> Callable[[int], bytes]:
    supply: Iterator[bytes] = iter(chunks)

    def rng(n: int) -> bytes:
        chunk = next(supply)
        assert len(chunk) == n
        return chunk

    return rng


class Recorder(trio.abc.Stream):
    """A stream that keeps a copy of everything sent through it."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def handshake_pair(
    initiator: Identity, responder: Identity, peer_id: int = 1
) -> tuple[Session, Session]:
    left, right = trio.testing.memory_stream_pair()
    sessions: dict[str, Session] = {}

    async def run_responder() -> None:
        sessions["r"] = await respond(right, responder, timeout_s=TIMEOUT_S)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_responder)
        sessions["i"] = await initiate(left, initiator, peer_id, timeout_s=TIMEOUT_S)
    return sessions["i"], sessions["r"]


async def respond_expecting_error(
    client: Callable[[trio.abc.Stream], Awaitable[None]], responder: Identity
) -> str:
    """Run a hand-written client against `respond`; return the responder's refusal."""
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(TIMEOUT_S * 2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client, left)
            with pytest.raises(HandshakeError) as caught:
                await respond(right, responder, timeout_s=TIMEOUT_S)
            nursery.cancel_scope.cancel()
    return str(caught.value)


# -- success -----------------------------------------------------------------------------


async def test_handshake_authenticates_both_sides_and_agrees_on_keys() -> None:
    mine, theirs = await handshake_pair(identity(0), identity(1))
    assert (mine.peer_id, theirs.peer_id) == (1, 0)
    assert mine.initiator_id == theirs.initiator_id == 0
    assert mine.transcript_hash == theirs.transcript_hash
    assert mine.send_key == theirs.receive_key and mine.receive_key == theirs.send_key
    assert mine.send_key != mine.receive_key
    assert mine.leftover == theirs.leftover == b""


async def test_fresh_randomness_gives_fresh_sessions() -> None:
    first, _ = await handshake_pair(identity(0), identity(1))
    second, _ = await handshake_pair(identity(0), identity(1))
    assert first.transcript_hash != second.transcript_hash
    assert first.send_key != second.send_key


async def test_vector_from_protocol_doc() -> None:
    left, right = trio.testing.memory_stream_pair()
    to_responder, to_initiator = Recorder(left), Recorder(right)
    sessions: dict[str, Session] = {}

    async def run_responder() -> None:
        rng = fixed_rng(b"\x21" * 32, b"\x22" * 32)
        sessions["r"] = await respond(to_initiator, identity(1), timeout_s=TIMEOUT_S, rng=rng)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_responder)
        rng = fixed_rng(b"\x11" * 32, b"\x12" * 32)
        sessions["i"] = await initiate(to_responder, identity(0), 1, timeout_s=TIMEOUT_S, rng=rng)

    assert bytes(KEYS[0].verify_key).hex() == (
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    )
    assert bytes(KEYS[1].verify_key).hex() == (
        "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
    )
    hello_i = (
        "0000007d97b27365716e65742f7472616e73706f72742f31c420"
        + "47" * 32
        + "0001c420"
        + "12" * 32
        + "c4207b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13c3"
    )
    auth_i = (
        "0000005192ad7365716e65742f617574682f31c440"
        "420a13540e611d2ceb14a64ac646ebc6261d03a8f719d1d4a84b29d28ab0c1d4"
        "62a6d89cd1973be615acb6e9e4c4d917d557d24b16317847eb825290b9a52001"
    )
    hello_r = (
        "0000007d97b27365716e65742f7472616e73706f72742f31c420"
        + "47" * 32
        + "0100c420"
        + "22" * 32
        + "c4207d34a4815fa6b982535e60af3bd9b49556816080f1641ff81d2b7c8ae8268a44c3"
    )
    auth_r = (
        "0000005192ad7365716e65742f617574682f31c440"
        "fa07ccf87c2849093b774e26a2a579e322b5f80f8a66068a61a42ae4c7c29632"
        "068b039b5fded6ce15a092d60a35be3deb665e72bbcfd7f40989daedf10bf20e"
    )
    assert to_responder.sent.hex() == hello_i + auth_i
    assert to_initiator.sent.hex() == hello_r + auth_r
    mine = sessions["i"]
    assert mine.transcript_hash.hex() == (
        "8be42830a8994039dfd244d06ee70b1eaa1e5c7d3887c47d301d685e29292514"
    )
    assert mine.send_key.hex() == (
        "6e72f2e192e38308c39e85c7865ba7a313a4d4835b0fcfb51b4359c970a863e5"
    )
    assert mine.receive_key.hex() == (
        "4a90db2fdfc996e31248b8e592b28788b8e6a32584b23b17b0fb3fd0179952c6"
    )
    record = RecordCipher(mine.send_key).seal(encode_frame(pack({"type": "ping", "round": 1})))
    assert record.hex() == (
        "00000026234c3fa154e679e2abf7c6120f125aef03e9205523454126cf901a20a4b08264ae49d271f7e9"
    )


# -- refusals ----------------------------------------------------------------------------


def hello_from(sender: int, receiver: int, genesis: bytes = GENESIS, seal: bool = True) -> bytes:
    return Hello(genesis, sender, receiver, b"\x01" * 32, b"\x09" * 32, seal).encode()


async def send_and_wait(stream: trio.abc.Stream, data: bytes) -> None:
    await stream.send_all(data)
    await trio.sleep_forever()


async def test_unknown_member_is_refused() -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await send_and_wait(stream, encode_frame(hello_from(sender=9, receiver=1)))

    reason = await respond_expecting_error(client, identity(1))
    assert "member 9 is not a peer" in reason


async def test_member_cannot_claim_to_be_me() -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await send_and_wait(stream, encode_frame(hello_from(sender=1, receiver=1)))

    assert "is not a peer" in await respond_expecting_error(client, identity(1))


async def test_non_member_key_posing_as_member_fails_signature() -> None:
    stranger = SigningKey(b"\x66" * 32)
    impostor = Identity(0, stranger, {**MEMBERS, 0: stranger.verify_key}, GENESIS)

    async def client(stream: trio.abc.Stream) -> None:
        await initiate(stream, impostor, 1, timeout_s=TIMEOUT_S)  # it cannot tell it failed
        await trio.sleep_forever()

    reason = await respond_expecting_error(client, identity(1))
    assert "bad signature from member 0" in reason


async def test_wrong_genesis_is_refused() -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await initiate(stream, identity(0, genesis=b"\x00" * 32), 1, timeout_s=TIMEOUT_S)

    assert "wrong genesis hash" in await respond_expecting_error(client, identity(1))


async def test_hello_for_another_member_is_refused() -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await send_and_wait(stream, encode_frame(hello_from(sender=0, receiver=2)))

    assert "addressed to member 2" in await respond_expecting_error(client, identity(1))


async def test_seal_mismatch_is_refused() -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await send_and_wait(stream, encode_frame(hello_from(0, 1, seal=False)))

    assert "seal setting mismatch" in await respond_expecting_error(client, identity(1))


async def tampering_client(stream: trio.abc.Stream, flip: bool, replay_of: bytes | None) -> None:
    """Do the initiator's part by hand, with a corrupted or replayed AUTH."""
    if replay_of is not None:
        await send_and_wait(stream, replay_of)
    ephemeral_public = b"\x09" * 32
    hello = Hello(GENESIS, 0, 1, b"\x01" * 32, ephemeral_public, True).encode()
    await stream.send_all(encode_frame(hello))
    received = b""
    while len(received) < 4:
        received += await stream.receive_some()
    hello_r = received[4 : 4 + int.from_bytes(received[:4], "big")]
    th = transcript_hash(hello, hello_r)
    signature = bytearray(KEYS[0].sign(auth_message(INITIATOR, th)).signature)
    if flip:
        signature[10] ^= 1
    await send_and_wait(stream, encode_frame(encode_auth(bytes(signature))))


async def test_tampered_signature_is_refused() -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await tampering_client(stream, flip=True, replay_of=None)

    assert "bad signature from member 0" in await respond_expecting_error(client, identity(1))


async def test_untampered_hand_written_client_is_accepted() -> None:
    """The control for the test above: the same client without the flip gets in."""
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tampering_client, left, False, None)
        session = await respond(right, identity(1), timeout_s=TIMEOUT_S)
        nursery.cancel_scope.cancel()
    assert session.peer_id == 0


async def test_replayed_handshake_is_refused() -> None:
    left, right = trio.testing.memory_stream_pair()
    recorded = Recorder(left)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(initiate, recorded, identity(0), 1, timeout_s=TIMEOUT_S))
        await respond(right, identity(1), timeout_s=TIMEOUT_S)

    async def replayer(stream: trio.abc.Stream) -> None:
        await send_and_wait(stream, bytes(recorded.sent))

    reason = await respond_expecting_error(replayer, identity(1))
    assert "bad signature from member 0" in reason


async def test_responder_impersonation_is_refused_by_initiator() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        # Whoever listens at member 1's address answers as member 2.
        async def wrong_responder() -> None:
            await right.receive_some()
            hello = Hello(GENESIS, 2, 0, b"\x02" * 32, b"\x09" * 32, True).encode()
            await right.send_all(encode_frame(hello) + encode_frame(encode_auth(b"\x00" * 64)))
            await trio.sleep_forever()

        nursery.start_soon(wrong_responder)
        with pytest.raises(HandshakeError, match="dialed member 1 but member 2 answered"):
            await initiate(left, identity(0), 1, timeout_s=TIMEOUT_S)
        nursery.cancel_scope.cancel()


async def test_forged_responder_signature_is_refused_by_initiator() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def forging_responder() -> None:
            await right.receive_some()
            hello = Hello(GENESIS, 1, 0, b"\x02" * 32, b"\x09" * 32, True).encode()
            await right.send_all(encode_frame(hello) + encode_frame(encode_auth(b"\x00" * 64)))
            await trio.sleep_forever()

        nursery.start_soon(forging_responder)
        with pytest.raises(HandshakeError, match="bad signature from member 1"):
            await initiate(left, identity(0), 1, timeout_s=TIMEOUT_S)
        nursery.cancel_scope.cancel()


async def test_silent_peer_times_out(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    start = trio.current_time()
    with pytest.raises(HandshakeError, match="timed out"):
        await respond(right, identity(1), timeout_s=TIMEOUT_S)
    with pytest.raises(HandshakeError, match="timed out"):
        await initiate(left, identity(0), 1, timeout_s=TIMEOUT_S)
    assert trio.current_time() - start == pytest.approx(2 * TIMEOUT_S)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff" * 64, "bad handshake frame"),  # a length far over the handshake limit
        (encode_frame(b"\xc1"), "undecodable handshake message"),
        (encode_frame(pack(["seqnet/transport/0", 1, 2])), "expected a 'seqnet/transport/1'"),
        (encode_frame(pack(["seqnet/transport/1", b"", 0, 1, b"", b"", True])), "malformed hello"),
        (b"\x00\x00", "closed the connection during the handshake"),
    ],
)
async def test_garbage_handshake_is_refused(data: bytes, reason: str) -> None:
    async def client(stream: trio.abc.Stream) -> None:
        await stream.send_all(data)
        await stream.aclose()

    assert reason in await respond_expecting_error(client, identity(1))


# -- abandoned and refused -----------------------------------------------------------------


async def test_a_peer_gone_or_silent_before_its_first_message_abandoned_the_handshake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    with pytest.raises(HandshakeAbandoned, match="timed out"):
        await respond(right, identity(1), timeout_s=TIMEOUT_S)
    await left.aclose()
    with pytest.raises(HandshakeAbandoned, match="closed the connection"):
        await respond(right, identity(1), timeout_s=TIMEOUT_S)


async def test_a_peer_gone_after_its_hello_failed_the_handshake() -> None:
    """The responder has signed by then: that is held against the source."""
    left, right = trio.testing.memory_stream_pair()
    hello = Hello(GENESIS, 0, 1, bytes(32), bytes(range(32)), True)

    async def client() -> None:
        await left.send_all(encode_frame(hello.encode()))
        await left.receive_some()  # HELLO_R and AUTH_R: then leave
        await left.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        with pytest.raises(HandshakeError, match="closed the connection") as caught:
            await respond(right, identity(1), timeout_s=TIMEOUT_S)
    assert not isinstance(caught.value, HandshakeAbandoned)


async def test_admit_refuses_a_member_before_the_responder_signs() -> None:
    left, right = trio.testing.memory_stream_pair()
    asked: list[int] = []

    def admit(member: int) -> str | None:
        asked.append(member)
        return "banned for another 5.0 s"

    async def responder() -> None:
        with pytest.raises(HandshakeRefused, match="member 0 refused: banned"):
            await respond(right, identity(1), timeout_s=TIMEOUT_S, admit=admit)
        await right.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder)
        # The initiator gets no answer at all: nothing signed, nothing to learn from.
        with pytest.raises(HandshakeAbandoned, match="closed the connection"):
            await initiate(left, identity(0), 1, timeout_s=TIMEOUT_S)
    assert asked == [0]
