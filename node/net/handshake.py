"""The peer transport's handshake: mutual authentication of two committee members.

Three messages, each one frame (framing.py), over any trio stream:

    initiator → responder   HELLO_I
    responder → initiator   HELLO_R, AUTH_R
    initiator → responder   AUTH_I

    HELLO = ["seqnet/transport/1", genesis_hash, sender_id, receiver_id, nonce, x25519_pub, seal]
    AUTH  = ["seqnet/auth/1", ed25519_signature]
    th    = SHA-256(frame(HELLO_I) ‖ frame(HELLO_R))            the transcript hash
    AUTH_x signs  b"seqnet/transport/1 auth\\x00" ‖ role ‖ b"\\x00" ‖ th
                  role = b"initiator" | b"responder"
    k_ir ‖ k_ri = HKDF-SHA256(X25519(e_I, E_R), salt=th, info=b"seqnet/transport/1 keys", 64)

Identity keys are the Ed25519 keys pinned in genesis; nonces and X25519 keys are fresh per
connection, so a recorded handshake replayed to a responder signs the wrong transcript,
and the session keys are forward secret. The responder checks genesis, addressee and
membership before it answers, and both sides check the other's signature before they
trust a byte. Every refusal is a `HandshakeError` naming the reason; a peer that went
away or stayed silent before its first message is a `HandshakeAbandoned` (it cost us
nothing to answer). The whole exchange runs under one timeout. docs/PROTOCOL.md §6 has a
test vector.

The responder may also refuse a member the transport keeps out (a ban): `admit` is asked
right after the hello, before any signature or key exchange, so a banned member's
reconnects cost a hello's decoding. The claimed id is not yet proven there, which is
harmless: a liar who claims a banned id only refuses its own connection.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from node.net.framing import (
    KEY_BYTES,
    FrameDecoder,
    FrameError,
    PeerProtocolError,
    encode_frame,
    pack,
    unpack,
)

HELLO_TAG: Final = "seqnet/transport/1"
AUTH_TAG: Final = "seqnet/auth/1"
AUTH_CONTEXT: Final = b"seqnet/transport/1 auth\x00"
KEYS_INFO: Final = b"seqnet/transport/1 keys"
INITIATOR: Final = b"initiator"
RESPONDER: Final = b"responder"
NONCE_BYTES: Final = 32
GENESIS_HASH_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
MAX_HANDSHAKE_FRAME_BYTES: Final = 512
MAX_MEMBER_ID: Final = 2**32 - 1
_RECEIVE_BYTES: Final = 4096

Random = Callable[[int], bytes]


class HandshakeError(PeerProtocolError):
    """The peer is not who it must be, or did not follow the handshake; drop it."""


class HandshakeAbandoned(HandshakeError):
    """The peer closed, broke off or stayed silent before a whole message arrived. It cost
    us nothing but a slot for a while, so the transport does not hold it against the
    source (a port probe, or a dial whose bytes a partition swallowed)."""


class HandshakeRefused(HandshakeError):
    """A well-formed hello from a member we keep out for now: policy, not the peer's fault
    in this handshake (it is not counted against its source address)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What one member brings to every handshake."""

    me: int
    signing_key: SigningKey
    members: Mapping[int, VerifyKey]  # the committee from genesis, me included
    genesis_hash: bytes
    seal: bool = True  # must match the peer's (it is in the signed transcript)

    def __post_init__(self) -> None:
        if len(self.genesis_hash) != GENESIS_HASH_BYTES:
            raise ValueError(f"genesis hash must be {GENESIS_HASH_BYTES} bytes")
        if self.me not in self.members:
            raise ValueError(f"member {self.me} is not in the committee")
        if bytes(self.members[self.me]) != bytes(self.signing_key.verify_key):
            raise ValueError(f"identity key is not member {self.me}'s key in genesis")


@dataclass(frozen=True, slots=True)
class Hello:
    genesis_hash: bytes
    sender: int
    receiver: int
    nonce: bytes
    ephemeral_public: bytes
    seal: bool

    def encode(self) -> bytes:
        return pack(
            [
                HELLO_TAG,
                self.genesis_hash,
                self.sender,
                self.receiver,
                self.nonce,
                self.ephemeral_public,
                self.seal,
            ]
        )

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        fields = _decode_message(payload, HELLO_TAG, 7)
        _, genesis_hash, sender, receiver, nonce, ephemeral_public, seal = fields
        ok = (
            _is_bytes(genesis_hash, GENESIS_HASH_BYTES)
            and _is_member_id(sender)
            and _is_member_id(receiver)
            and _is_bytes(nonce, NONCE_BYTES)
            and _is_bytes(ephemeral_public, KEY_BYTES)
            and isinstance(seal, bool)
        )
        if not ok:
            raise HandshakeError("malformed hello")
        return cls(genesis_hash, sender, receiver, nonce, ephemeral_public, seal)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated connection's parameters, as both ends derive them."""

    peer_id: int
    initiator_id: int
    transcript_hash: bytes
    send_key: bytes
    receive_key: bytes
    seal: bool
    leftover: bytes  # bytes that followed the handshake in the same read


def _decode_message(payload: bytes, tag: str, length: int) -> list[Any]:
    try:
        fields = unpack(payload)
    except FrameError:
        raise HandshakeError("undecodable handshake message") from None
    if not isinstance(fields, list) or len(fields) != length or fields[0] != tag:
        raise HandshakeError(f"expected a {tag!r} message")
    return fields


def _is_bytes(value: Any, length: int) -> bool:
    return isinstance(value, bytes) and len(value) == length


def _is_member_id(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_MEMBER_ID


def encode_auth(signature: bytes) -> bytes:
    return pack([AUTH_TAG, signature])


def decode_auth(payload: bytes) -> bytes:
    _, signature = _decode_message(payload, AUTH_TAG, 2)
    if not _is_bytes(signature, SIGNATURE_BYTES):
        raise HandshakeError("malformed auth")
    signature_bytes: bytes = signature
    return signature_bytes


def transcript_hash(hello_initiator: bytes, hello_responder: bytes) -> bytes:
    """SHA-256 over both hellos exactly as framed on the wire."""
    return hashlib.sha256(encode_frame(hello_initiator) + encode_frame(hello_responder)).digest()


def auth_message(role: bytes, th: bytes) -> bytes:
    assert role in (INITIATOR, RESPONDER)
    return AUTH_CONTEXT + role + b"\x00" + th


def derive_keys(ephemeral: X25519PrivateKey, peer_public: bytes, th: bytes) -> tuple[bytes, bytes]:
    """(initiator→responder key, responder→initiator key)."""
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:  # a low-order point gives the all-zero secret
        raise HandshakeError("degenerate ephemeral key") from None
    okm = HKDF(hashes.SHA256(), length=2 * KEY_BYTES, salt=th, info=KEYS_INFO).derive(shared)
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


def _verify(identity: Identity, member: int, role: bytes, th: bytes, signature: bytes) -> None:
    try:
        identity.members[member].verify(auth_message(role, th), signature)
    except BadSignatureError:
        raise HandshakeError(
            f"bad signature from member {member} (forged, replayed or wrong key)"
        ) from None


def _new_hello(identity: Identity, receiver: int, rng: Random) -> tuple[Hello, X25519PrivateKey]:
    ephemeral = X25519PrivateKey.from_private_bytes(rng(KEY_BYTES))
    hello = Hello(
        identity.genesis_hash,
        identity.me,
        receiver,
        rng(NONCE_BYTES),
        ephemeral.public_key().public_bytes_raw(),
        identity.seal,
    )
    return hello, ephemeral


def _check_hello(identity: Identity, hello: Hello, expected_sender: int | None) -> None:
    """What the receiver of a hello requires (the responder knows no sender yet)."""
    if hello.genesis_hash != identity.genesis_hash:
        raise HandshakeError(
            f"wrong genesis hash {hello.genesis_hash.hex()[:16]}… from member {hello.sender}"
        )
    if hello.receiver != identity.me:
        raise HandshakeError(f"hello addressed to member {hello.receiver}, not to me")
    if expected_sender is not None and hello.sender != expected_sender:
        raise HandshakeError(f"dialed member {expected_sender} but member {hello.sender} answered")
    if hello.sender == identity.me or hello.sender not in identity.members:
        raise HandshakeError(f"member {hello.sender} is not a peer in this committee")
    if hello.seal != identity.seal:
        raise HandshakeError(f"seal setting mismatch (peer {hello.seal}, me {identity.seal})")


class _Wire:
    """The handshake's view of a stream: whole frames in, whole frames out."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES)
        self.received = 0  # whole frames so far

    async def receive(self) -> bytes:
        # Losing the peer before its first frame is an abandoned handshake; after it
        # (we may have signed by then) a failed one.
        lost = HandshakeError if self.received else HandshakeAbandoned
        while True:
            try:
                frames = self._decoder.frames(limit=1)
            except FrameError as error:
                raise HandshakeError(f"bad handshake frame: {error}") from None
            if frames:
                self.received += 1
                return frames[0]
            try:
                data = await self._stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                raise lost(f"connection lost during handshake: {error!r}") from None
            if not data:
                raise lost("peer closed the connection during the handshake")
            self._decoder.feed(data)

    def timed_out(self, timeout_s: float) -> HandshakeError:
        lost = HandshakeError if self.received else HandshakeAbandoned
        return lost(f"handshake timed out after {timeout_s} s")

    async def send(self, *payloads: bytes) -> None:
        try:
            await self._stream.send_all(b"".join(encode_frame(p) for p in payloads))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise HandshakeError(f"connection lost during handshake: {error!r}") from None

    def leftover(self) -> bytes:
        return self._decoder.take_buffered()


async def initiate(
    stream: trio.abc.Stream,
    identity: Identity,
    peer_id: int,
    *,
    timeout_s: float,
    rng: Random = os.urandom,
) -> Session:
    """Authenticate to member `peer_id` over a fresh connection we opened."""
    assert peer_id != identity.me and peer_id in identity.members
    wire = _Wire(stream)
    with trio.move_on_after(timeout_s):
        hello, ephemeral = _new_hello(identity, peer_id, rng)
        hello_i = hello.encode()
        await wire.send(hello_i)
        hello_r = await wire.receive()
        peer_hello = Hello.decode(hello_r)
        _check_hello(identity, peer_hello, expected_sender=peer_id)
        th = transcript_hash(hello_i, hello_r)
        _verify(identity, peer_id, RESPONDER, th, decode_auth(await wire.receive()))
        send_key, receive_key = derive_keys(ephemeral, peer_hello.ephemeral_public, th)
        signature = identity.signing_key.sign(auth_message(INITIATOR, th)).signature
        await wire.send(encode_auth(signature))
        return Session(
            peer_id, identity.me, th, send_key, receive_key, identity.seal, wire.leftover()
        )
    raise wire.timed_out(timeout_s)


async def respond(
    stream: trio.abc.Stream,
    identity: Identity,
    *,
    timeout_s: float,
    rng: Random = os.urandom,
    admit: Callable[[int], str | None] | None = None,
) -> Session:
    """Authenticate whoever connected to us; they must be a member of the committee.
    `admit(member)` returns why that member is kept out, or None to go on."""
    wire = _Wire(stream)
    with trio.move_on_after(timeout_s):
        hello_i = await wire.receive()
        peer_hello = Hello.decode(hello_i)
        _check_hello(identity, peer_hello, expected_sender=None)
        peer_id = peer_hello.sender
        refusal = None if admit is None else admit(peer_id)
        if refusal is not None:
            raise HandshakeRefused(f"member {peer_id} refused: {refusal}")
        hello, ephemeral = _new_hello(identity, peer_id, rng)
        hello_r = hello.encode()
        th = transcript_hash(hello_i, hello_r)
        receive_key, send_key = derive_keys(ephemeral, peer_hello.ephemeral_public, th)
        signature = identity.signing_key.sign(auth_message(RESPONDER, th)).signature
        await wire.send(hello_r, encode_auth(signature))
        _verify(identity, peer_id, INITIATOR, th, decode_auth(await wire.receive()))
        return Session(peer_id, peer_id, th, send_key, receive_key, identity.seal, wire.leftover())
    raise wire.timed_out(timeout_s)
