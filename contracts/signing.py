"""EIP-712 digests of checkpoints and committee rotations, and secp256k1 member signatures.

Pure functions, no web3: the digest is computed from the canonical bytes with keccak (far
faster than eth_account's typed-data encoder), signatures are made and recovered with
coincurve. The type strings and a test vector are in docs/PROTOCOL.md §5; the contract
computes the same digest with OpenZeppelin's EIP712("seqnet", "1").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from coincurve import PrivateKey, PublicKey

from matching.merkle import keccak

DOMAIN_NAME = "seqnet"
DOMAIN_VERSION = "1"
DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
CHECKPOINT_TYPE = (
    b"Checkpoint(uint64 epoch,uint64 sequence,bytes32 stateRoot,bytes32 withdrawalsRoot,"
    b"uint64 lastDepositId)"
)
ROTATION_TYPE = b"Rotation(uint64 epoch,address[] members,uint16 threshold)"
DOMAIN_TYPEHASH = keccak(DOMAIN_TYPE)
CHECKPOINT_TYPEHASH = keccak(CHECKPOINT_TYPE)
ROTATION_TYPEHASH = keccak(ROTATION_TYPE)

_U64_MAX = (1 << 64) - 1
_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    epoch: int
    sequence: int
    state_root: bytes
    withdrawals_root: bytes
    last_deposit_id: int

    def __post_init__(self) -> None:
        for name in ("epoch", "sequence", "last_deposit_id"):
            value = getattr(self, name)
            if not 0 <= value <= _U64_MAX:
                raise ValueError(f"{name} out of uint64 range: {value}")
        if len(self.state_root) != 32 or len(self.withdrawals_root) != 32:
            raise ValueError("roots must be 32 bytes")


@dataclass(frozen=True, slots=True)
class Signature:
    """ERC-2098 compact signature: `vs` is the low-s `s` with the recovery id in bit 255."""

    r: bytes
    vs: bytes

    def __post_init__(self) -> None:
        if len(self.r) != 32 or len(self.vs) != 32:
            raise ValueError("r and vs must be 32 bytes")

    def to_bytes(self) -> bytes:
        return self.r + self.vs

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        if len(data) != 64:
            raise ValueError(f"a compact signature is 64 bytes, got {len(data)}")
        return cls(data[:32], data[32:])


def _u(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: bytes) -> bytes:
    if len(address) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(address)}")
    return bytes(12) + address


def domain_separator(chain_id: int, contract: bytes) -> bytes:
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + _u(chain_id)
        + _address_word(contract)
    )


def _typed_digest(chain_id: int, contract: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain_separator(chain_id, contract) + struct_hash)


def checkpoint_digest(chain_id: int, contract: bytes, cp: Checkpoint) -> bytes:
    struct_hash = keccak(
        CHECKPOINT_TYPEHASH
        + _u(cp.epoch)
        + _u(cp.sequence)
        + cp.state_root
        + cp.withdrawals_root
        + _u(cp.last_deposit_id)
    )
    return _typed_digest(chain_id, contract, struct_hash)


def committee_hash(members: Sequence[bytes]) -> bytes:
    """keccak(abi.encodePacked(address[])): each address left-padded to 32 bytes."""
    return keccak(b"".join(_address_word(m) for m in members))


def rotation_digest(
    chain_id: int, contract: bytes, epoch: int, members: Sequence[bytes], threshold: int
) -> bytes:
    """Digest the current committee signs to install `members` as epoch `epoch`."""
    struct_hash = keccak(ROTATION_TYPEHASH + _u(epoch) + committee_hash(members) + _u(threshold))
    return _typed_digest(chain_id, contract, struct_hash)


def address_of(private_key: bytes) -> bytes:
    public = PrivateKey(private_key).public_key.format(compressed=False)
    return keccak(public[1:])[12:]


def sign(private_key: bytes, digest: bytes) -> Signature:
    raw = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    r, s, recovery_id = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    assert s <= _HALF_N, "coincurve signatures are low-s"
    return Signature(r, _u(s | (recovery_id << 255)))


def recover(digest: bytes, signature: Signature) -> bytes | None:
    """Signer address, or None for a malformed or high-s signature (as the contract)."""
    vs = int.from_bytes(signature.vs, "big")
    s, recovery_id = vs & ((1 << 255) - 1), vs >> 255
    if s == 0 or s > _HALF_N:
        return None
    try:
        public = PublicKey.from_signature_and_message(
            signature.r + _u(s) + bytes([recovery_id]), digest, hasher=None
        )
    except ValueError:
        return None
    return keccak(public.format(compressed=False)[1:])[12:]


def sorted_members(members: Iterable[bytes]) -> list[bytes]:
    """Members in the order the contract requires: strictly ascending as integers."""
    out = sorted(members)  # 20-byte big-endian strings sort like the integers they encode
    if any(a == b for a, b in pairwise(out)):
        raise ValueError("duplicate committee member")
    return out


def ordered_signatures(signatures: Mapping[bytes, Signature]) -> list[Signature]:
    """Signatures keyed by signer address, in ascending signer order (as submitted)."""
    return [signatures[a] for a in sorted(signatures)]
