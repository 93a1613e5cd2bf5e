"""Checkpoint / rotation EIP-712 digests and member signatures (docs/PROTOCOL.md, vectors).

No chain here: the digests are pinned as test vectors and cross-checked against
eth-account's independent typed-data encoder; the contract side of the same digest is
exercised by every accepted checkpoint in the chain tests.
"""

from __future__ import annotations

import eth_utils
import pytest
from eth_account.messages import encode_typed_data

from contracts.signing import (
    CHECKPOINT_TYPEHASH,
    ROTATION_TYPEHASH,
    Checkpoint,
    Signature,
    address_of,
    checkpoint_digest,
    committee_hash,
    domain_separator,
    recover,
    rotation_digest,
    sign,
    sorted_members,
)

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
CHAIN_ID = 31337
CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
VECTOR = Checkpoint(
    epoch=0,
    sequence=1,
    state_root=bytes.fromhex("0b00142b6184fd274c1039dc3db657b2c7f51b1d9150709ed6e7013f8fb6af13"),
    withdrawals_root=bytes.fromhex(
        "911c85cc51b207ae0430478610b5191f6c9aa4e8732a243e3fe0c394aac6fa53"
    ),
    last_deposit_id=2,
)
MEMBERS = [bytes.fromhex("00" * 19 + "a1"), bytes.fromhex("00" * 19 + "b2")]
DOMAIN = {
    "name": "seqnet",
    "version": "1",
    "chainId": CHAIN_ID,
    "verifyingContract": eth_utils.to_checksum_address(CONTRACT),
}


def eth_account_digest(types: dict[str, list[dict[str, str]]], message: dict[str, object]) -> bytes:
    m = encode_typed_data(domain_data=DOMAIN, message_types=types, message_data=message)
    return bytes(eth_utils.keccak(b"\x19" + m.version + m.header + m.body))


def test_checkpoint_vector() -> None:
    assert address_of(KEY).hex() == "2c7536e3605d9c16a7a3d7b1898e529396a65c23"
    assert CHECKPOINT_TYPEHASH.hex() == (
        "e8116e426d2511b1ce4b8f58de285dcd07bb9a8e3ef03e3bda177e3bb87eae92"
    )
    assert domain_separator(CHAIN_ID, CONTRACT).hex() == (
        "7edaa80ce1075695528e60f6c5f68653c62076ff0ca340532702cbe272f7d161"
    )
    digest = checkpoint_digest(CHAIN_ID, CONTRACT, VECTOR)
    assert digest.hex() == "93039fd86b32aeb66ab9dd00a17fbb8f2ab183f69c929c37457829aacc3e8e35"
    sig = sign(KEY, digest)
    assert sig.r.hex() == "1a29503e2f8e2f6ece74411e1c72b1871171111642c4c4bd848e28127c17714b"
    assert sig.vs.hex() == "f1e531b8ebbc35cdce85632a64ea538255195533b948b5dafabf7f7261f92313"
    assert recover(digest, sig) == address_of(KEY)
    types = {
        "Checkpoint": [
            {"name": "epoch", "type": "uint64"},
            {"name": "sequence", "type": "uint64"},
            {"name": "stateRoot", "type": "bytes32"},
            {"name": "withdrawalsRoot", "type": "bytes32"},
            {"name": "lastDepositId", "type": "uint64"},
        ]
    }
    message = {
        "epoch": 0,
        "sequence": 1,
        "stateRoot": VECTOR.state_root,
        "withdrawalsRoot": VECTOR.withdrawals_root,
        "lastDepositId": 2,
    }
    assert eth_account_digest(types, message) == digest


def test_rotation_vector() -> None:
    assert ROTATION_TYPEHASH.hex() == (
        "9398a22117f8d32879f9fd082dc01afa1c1d7531f4389d31b3f3b33b1d3b8a66"
    )
    assert committee_hash(MEMBERS).hex() == (
        "b0c2d61ae6550bc2b7e7d5ce4058f22f24253699d2997161f49fdc4aab81b3d6"
    )
    digest = rotation_digest(CHAIN_ID, CONTRACT, 1, MEMBERS, 2)
    assert digest.hex() == "8697b40b5618007a137953bbda309d9ee5ba3eeb875417e27d609b488be4ec3f"
    types = {
        "Rotation": [
            {"name": "epoch", "type": "uint64"},
            {"name": "members", "type": "address[]"},
            {"name": "threshold", "type": "uint16"},
        ]
    }
    message = {
        "epoch": 1,
        "members": [eth_utils.to_checksum_address(m) for m in MEMBERS],
        "threshold": 2,
    }
    assert eth_account_digest(types, message) == digest


def test_recover_refuses_malformed() -> None:
    digest = checkpoint_digest(CHAIN_ID, CONTRACT, VECTOR)
    sig = sign(KEY, digest)
    assert recover(digest, Signature(sig.r, bytes(32))) is None  # s = 0
    high = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2 + 1
    assert recover(digest, Signature(sig.r, high.to_bytes(32, "big"))) is None
    assert Signature.from_bytes(sig.to_bytes()) == sig
    with pytest.raises(ValueError):
        Checkpoint(0, 2**64, VECTOR.state_root, VECTOR.withdrawals_root, 0)


def test_sorted_members() -> None:
    assert sorted_members(MEMBERS[::-1]) == MEMBERS
    with pytest.raises(ValueError):
        sorted_members([MEMBERS[0], MEMBERS[0]])
