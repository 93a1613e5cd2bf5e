"""The committee key as genesis records it, and the development-chain key ceremony.

`FairnessGenesis` is genesis's `[fairness]` table: the epoch and the committee key's
§10.1 bytes (docs/PROTOCOL.md). `local_dkg` runs the DKG state machine (dkg.py) for
every member in one process, on a perfect channel: what `seqnet committee init` does,
since it already holds every member's keys. That is only sound where one operator is
trusted with every member anyway, so it refuses any chain but the development chain;
a production committee runs the DKG over its committed log (FAIRNESS.md, "Status").
Pure: the members' secrets and the dealing seeds are arguments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from node.fairness.dkg import (
    Broadcast,
    Completed,
    Dkg,
    DkgConfig,
    member_key_from_settlement,
    member_public_key,
)
from node.fairness.errors import FairnessError
from node.fairness.threshold import DEV_CHAIN_ID, KeyShare, ThresholdPublicKey

MAX_EPOCH: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class FairnessGenesis:
    """Genesis's `[fairness]`: the epoch and the committee key of that epoch."""

    epoch: int
    key: ThresholdPublicKey
    key_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.epoch) is not int or not 0 <= self.epoch <= MAX_EPOCH:
            raise FairnessError("bad_epoch", "the epoch is a u64")
        object.__setattr__(self, "key_id", self.key.key_id)

    def check_committee(self, members: int) -> None:
        """The key has one share per member and the threshold f + 1."""
        f = (members - 1) // 3
        if self.key.members != members or self.key.threshold != f + 1:
            raise FairnessError(
                "bad_key",
                f"the committee key has t={self.key.threshold}, n={self.key.members}; "
                f"a committee of {members} needs t={f + 1}, n={members}",
            )

    def to_toml(self) -> dict[str, object]:
        return {"epoch": self.epoch, "committee_key": "0x" + self.key.encode().hex()}

    def public_json(self) -> dict[str, object]:
        """What `GET /v1/fairness/key` answers."""
        return {
            "status": "ready",
            "committee_key": "0x" + self.key.encode().hex(),
            "key_id": "0x" + self.key_id.hex(),
            "epoch": self.epoch,
            "t": self.key.threshold,
            "n": self.key.members,
        }


def local_dkg(
    chain_id: int, epoch: int, settlement_secrets: Sequence[bytes], seeds: Sequence[bytes]
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """Every member's DKG run in one process (development chain only): the key and each
    member's share, in member order. `seeds`: 32 fresh random bytes per member."""
    if chain_id != DEV_CHAIN_ID:
        raise FairnessError(
            "dkg_refused",
            f"the in-process key ceremony runs only on the development chain {DEV_CHAIN_ID}; "
            "a production committee runs the DKG among its members",
        )
    n = len(settlement_secrets)
    assert len(seeds) == n
    secrets = [member_key_from_settlement(s) for s in settlement_secrets]
    config = DkgConfig(
        chain_id, epoch, (n - 1) // 3 + 1, tuple(member_public_key(s) for s in secrets)
    )
    members = [Dkg(config, i + 1, s) for i, s in enumerate(secrets)]
    channel: deque[tuple[int, bytes]] = deque()
    for i, (member, seed) in enumerate(zip(members, seeds, strict=True)):
        channel.extend((i + 1, a.data) for a in member.start(seed) if isinstance(a, Broadcast))

    def drain() -> None:
        while channel:
            sender, data = channel.popleft()
            for i, member in enumerate(members):
                for action in member.receive(sender, data):
                    if isinstance(action, Broadcast):
                        channel.append((i + 1, action.data))

    drain()
    for member in members:
        member.close_dealings()
    drain()
    shares: list[KeyShare] = []
    public: ThresholdPublicKey | None = None
    for member in members:
        (final,) = member.finish()
        if not isinstance(final, Completed) or final.result.share is None:
            raise FairnessError("dkg_failed", f"member {member.me}: {final}")
        assert public is None or final.result.public == public
        public = final.result.public
        shares.append(final.result.share)
    assert public is not None
    return public, tuple(shares)
