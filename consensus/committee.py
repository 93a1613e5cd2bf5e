"""The committee: members' public keys, quorum sizes and the chain id signatures bind to.

Members are identified by their index in `public_keys` (the genesis order). With
n = 3f + 1 members a quorum is 2f + 1; for any n the quorum is floor(2n/3) + 1, so two
quorums always share an honest member when at most f = (n - 1) // 3 are faulty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.crypto import PUBLIC_KEY_LEN

MAX_COMMITTEE = 256
MAX_CHAIN_ID_LEN = 64


@dataclass(frozen=True, slots=True)
class Committee:
    public_keys: tuple[bytes, ...]
    # Bound into every signature and into the genesis block, so that a signature made for
    # one network (or a test vector) can never count on another.
    chain_id: bytes
    f: int = field(init=False)
    quorum: int = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.public_keys)
        assert 1 <= n <= MAX_COMMITTEE, f"committee size {n} out of range"
        assert all(len(k) == PUBLIC_KEY_LEN for k in self.public_keys)
        assert len(set(self.public_keys)) == n, "duplicate committee key"
        assert 0 < len(self.chain_id) <= MAX_CHAIN_ID_LEN
        object.__setattr__(self, "f", (n - 1) // 3)
        object.__setattr__(self, "quorum", 2 * n // 3 + 1)

    @property
    def n(self) -> int:
        return len(self.public_keys)

    def is_member(self, index: int) -> bool:
        return 0 <= index < len(self.public_keys)
