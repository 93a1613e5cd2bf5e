"""Shared setup of the settlement tests: a deployed Settlement, test tokens, a committee."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from contracts.chain import Chain
from contracts.settlement import ETH, Erc20, Reverted, Settlement, TokenConfig, TxResult, deploy
from contracts.signing import Checkpoint, Signature, address_of, sign
from matching.merkle import keccak

ETH_UNIT = 10**9
TOKEN_UNIT = 10**12
FEE_BPS = 100
ESCAPE_DELAY_S = 3600
N_MEMBERS, THRESHOLD = 4, 3
MINTED = 10**24


def member_keys(n: int, salt: bytes = b"member") -> list[bytes]:
    """n deterministic secp256k1 keys, in ascending order of their addresses."""
    keys = [keccak(salt + i.to_bytes(4, "big")) for i in range(n)]
    return sorted(keys, key=address_of)


@dataclass
class World:
    chain: Chain
    s: Settlement
    deployer: bytes
    keys: list[bytes]  # committee keys, ascending by address
    members: list[bytes]
    users: list[bytes]  # funded trader keys
    token: bytes  # plain ERC-20, 18 decimals
    fee_token: bytes  # 1% fee on transfer
    evil: bytes  # reentrant

    def sigs(self, digest: bytes, keys: Sequence[bytes] | None = None) -> dict[bytes, Signature]:
        chosen = self.keys[:THRESHOLD] if keys is None else keys
        return {address_of(k): sign(k, digest) for k in chosen}

    def checkpoint(self, cp: Checkpoint, keys: Sequence[bytes] | None = None) -> TxResult:
        return self.s.submit_checkpoint(
            self.deployer, cp, self.members, self.sigs(self.s.checkpoint_digest(cp), keys)
        )

    def addr(self, key: bytes) -> bytes:
        return address_of(key)

    def balance(self, token: bytes, account: bytes) -> int:
        if token == ETH:
            return int(self.chain.w3.eth.get_balance(self.chain.w3.to_checksum_address(account)))
        return Erc20(self.chain.w3, token).balance_of(account)


def make_world(chain: Chain) -> World:
    w3, deployer = chain.w3, chain.keys[0]
    users = chain.keys[1:4]
    token = deploy(w3, deployer, "TestToken", "Test USD", "TUSD", 18)
    fee_token = deploy(w3, deployer, "FeeOnTransferToken", FEE_BPS)
    evil = deploy(w3, deployer, "ReentrantToken")
    keys = member_keys(N_MEMBERS)
    members = [address_of(k) for k in keys]
    tokens = [
        TokenConfig(ETH, ETH_UNIT),
        TokenConfig(token, TOKEN_UNIT),
        TokenConfig(fee_token, TOKEN_UNIT),
        TokenConfig(evil, 1),
    ]
    s = Settlement.deploy(w3, deployer, members, THRESHOLD, tokens, ESCAPE_DELAY_S)
    for t, artifact in ((token, "TestToken"), (fee_token, "FeeOnTransferToken")):
        for u in users:
            Erc20(w3, t, artifact).mint(deployer, address_of(u), MINTED)
    return World(chain, s, deployer, keys, members, users, token, fee_token, evil)


@contextmanager
def reverts(name: str) -> Iterator[None]:
    """Assert that the block raises `Reverted` with the custom error `name`."""
    with pytest.raises(Reverted) as info:
        yield
    got = info.value
    assert got.name == name, f"reverted with {got.name}{got.error_args}, expected {name}"
