"""The peer messages of encrypted intents (docs/PROTOCOL.md §10.8): the documented
bytes, and the boundary's refusals of malformed ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest

from node.fairness import envelope as envelope_module
from node.fairness import threshold
from node.net import messages
from node.net.messages import (
    DecryptionShares,
    ForwardedEnvelopes,
    PeerProtocolError,
    SharesRequest,
    decode_peer_message,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def _vectors() -> dict[str, Any]:
    text = DOC.read_text()
    block = re.search(r"<!-- fairness-vectors:begin -->\n```json\n(.*?)```", text, re.S)
    assert block is not None
    data: dict[str, Any] = json.loads(block.group(1))
    return data


def _wire(message: list[Any]) -> Any:
    return msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)


def test_documented_message_bytes() -> None:
    v = _vectors()
    share = bytes.fromhex(v["decryption_shares"][0][2:])
    envelope = bytes.fromhex(v["envelope"][2:])
    text = DOC.read_text()
    section = text[text.index("### 10.8") :]
    assert msgpack.packb(["dq", 7]) == bytes.fromhex("92a2647107")
    assert "92 a2 64 71 07" in section
    ds = msgpack.packb(["ds", 7, [[0, share]]], use_bin_type=True)
    assert ds == bytes.fromhex("93a2647307919200c463") + share
    assert "93 a2 64 73 07 91 92 00 c4 63" in section
    e = msgpack.packb(["e", [envelope]], use_bin_type=True)
    assert e == bytes.fromhex("92a16591c501f7") + envelope
    assert "92 a1 65 91 c5 01 f7" in section
    assert decode_peer_message(_wire(["ds", 7, [[0, share]]])) == DecryptionShares(7, ((0, share),))
    assert decode_peer_message(_wire(["dq", 7])) == SharesRequest(7)
    assert decode_peer_message(_wire(["e", [envelope]])) == ForwardedEnvelopes((envelope,))


def test_bounds_agree_with_the_fairness_rooms() -> None:
    assert messages.SHARE_BYTES == threshold.SHARE_BYTES
    assert messages.MAX_ENVELOPE_BYTES == envelope_module.MAX_ENVELOPE_BYTES


SHARE = bytes(99)


@pytest.mark.parametrize(
    "message",
    [
        ["dq", 0],
        ["dq", True],
        ["dq", 1 << 62],
        ["dq"],
        ["ds", 1, [[0, SHARE[:-1]]]],
        ["ds", 1, [[0, SHARE + b"\x00"]]],
        ["ds", 1, [[-1, SHARE]]],
        ["ds", 1, [[100_001, SHARE]]],
        ["ds", 1, [[0, SHARE, 1]]],
        ["ds", 1, [0, SHARE]],
        ["ds", 1, [[0, SHARE]] * (messages.MAX_SHARE_ITEMS + 1)],
        ["ds", 0, []],
        ["ds", 1, "x"],
        ["e", [bytes(1528)]],
        ["e", [b"x"] * 513],
        ["e", "x"],
    ],
)
def test_malformed_messages_are_refused(message: list[Any]) -> None:
    with pytest.raises(PeerProtocolError):
        decode_peer_message(_wire(message))
