"""The peer transport's wire codec: frames, sealed records and their limits (sans-I/O).

    frame  = u32 big-endian length ‖ payload      payload: one msgpack object;
                                                   length 0: a keepalive, no object
    record = u32 big-endian length ‖ ChaCha20-Poly1305 ciphertext of one or more frames

A sealed session (the default) sends records; an unsealed one sends bare frames. Bytes
go in, frames come out, in the style of h11: no sockets, no clock, no randomness here
(docs/PROTOCOL.md §6 has the exact bytes). A length is checked against its limit as soon
as its 4 header bytes are in, before any body byte is buffered on its behalf.

What a peer can get wrong here raises `FrameError`; the transport drops that peer.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

HEADER_BYTES: Final = 4
TAG_BYTES: Final = 16  # Poly1305
KEY_BYTES: Final = 32
MAX_LENGTH: Final = 2**32 - 1  # what a u32 header can say
_HEADER: Final = struct.Struct(">I")
_NONCE: Final = struct.Struct(">4xQ")  # 96-bit AEAD nonce: 4 zero bytes ‖ u64 counter
_MAX_COUNTER: Final = 2**64 - 1


class PeerProtocolError(Exception):
    """A peer broke the wire protocol (bad frame, bad handshake); drop the connection."""


class FrameError(PeerProtocolError):
    """A malformed, oversized, truncated, forged or undecodable frame or record."""


# -- frames ----------------------------------------------------------------------------


def header(length: int) -> bytes:
    assert 0 <= length <= MAX_LENGTH, length
    return _HEADER.pack(length)


def encode_frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def pack(obj: Any) -> bytes:
    """The msgpack payload of one frame (bin type for bytes, str for str)."""
    payload: bytes = msgpack.packb(obj, use_bin_type=True, datetime=False)
    return payload


def unpack(payload: bytes) -> Any:
    """Decode one frame's payload; anything but exactly one msgpack object is a FrameError.

    Map keys may be any hashable msgpack value (int keys are allowed); extension types
    come back as `msgpack.ExtType` for the consumer to refuse.
    """
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False, timestamp=0)
    except (ValueError, TypeError) as error:  # msgpack's errors all derive from these
        raise FrameError(f"undecodable frame payload: {error}") from None


def _parse_frames(
    buffer: bytes | bytearray, start: int, max_frame_bytes: int, limit: int | None, unit: str
) -> tuple[list[bytes], int]:
    """Complete frames in buffer[start:], at most `limit` of them, and where parsing stopped.

    A length over the maximum raises at once, whether or not its body has arrived.
    """
    frames: list[bytes] = []
    position = start
    end = len(buffer)
    while end - position >= HEADER_BYTES and (limit is None or len(frames) < limit):
        (length,) = _HEADER.unpack_from(buffer, position)
        if length > max_frame_bytes:
            raise FrameError(f"{unit} of {length} bytes exceeds the maximum {max_frame_bytes}")
        body_end = position + HEADER_BYTES + length
        if body_end > end:
            break
        frames.append(bytes(buffer[position + HEADER_BYTES : body_end]))
        position = body_end
    return frames, position


class FrameDecoder:
    """Reassembles length-prefixed units (frames, or records) from a byte stream."""

    __slots__ = ("_buffer", "_max_bytes", "_unit")

    def __init__(self, max_bytes: int, unit: str = "frame") -> None:
        assert 0 <= max_bytes <= MAX_LENGTH, max_bytes
        self._max_bytes = max_bytes
        self._unit = unit
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def frames(self, limit: int | None = None) -> list[bytes]:
        """Pop the complete units buffered so far (at most `limit`); FrameError if one
        announces more than the maximum. The buffer never holds more than one incomplete
        unit plus one read's worth of bytes."""
        frames, position = _parse_frames(self._buffer, 0, self._max_bytes, limit, self._unit)
        if position:
            del self._buffer[:position]
        return frames

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def take_buffered(self) -> bytes:
        """Hand over the unparsed rest (e.g. frames that followed the handshake)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


def split_record(plaintext: bytes, max_frame_bytes: int) -> list[bytes]:
    """The frames one record carries; it must hold whole frames and nothing else."""
    frames, position = _parse_frames(plaintext, 0, max_frame_bytes, None, "frame")
    if position != len(plaintext):
        raise FrameError("record ends inside a frame")
    return frames


def max_record_bytes(max_frame_bytes: int) -> int:
    """Largest record ciphertext: a batch holds at most one max-size frame's worth."""
    return max_frame_bytes + HEADER_BYTES + TAG_BYTES


# -- records ---------------------------------------------------------------------------


class RecordCipher:
    """One direction of a sealed session: ChaCha20-Poly1305 with a counter nonce.

    The counter is implicit (never on the wire), so a record that is dropped, replayed,
    reordered or moved to another session fails authentication.
    """

    __slots__ = ("_aead", "_counter")

    def __init__(self, key: bytes) -> None:
        assert len(key) == KEY_BYTES
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0

    def _next_nonce(self) -> bytes:
        assert self._counter < _MAX_COUNTER, "session exhausted its nonces"
        nonce = _NONCE.pack(self._counter)
        self._counter += 1
        return nonce

    def seal(self, plaintext: bytes) -> bytes:
        """The whole record: header ‖ ciphertext."""
        ciphertext = self._aead.encrypt(self._next_nonce(), plaintext, None)
        return _HEADER.pack(len(ciphertext)) + ciphertext

    def open(self, ciphertext: bytes) -> bytes:
        """A record's body (header already stripped) → its plaintext, or FrameError."""
        if len(ciphertext) < TAG_BYTES:
            raise FrameError(f"record of {len(ciphertext)} bytes is shorter than its tag")
        try:
            return self._aead.decrypt(self._next_nonce(), ciphertext, None)
        except InvalidTag:
            raise FrameError("record failed authentication (forged, replayed or corrupt)") from None
