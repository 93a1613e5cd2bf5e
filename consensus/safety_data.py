"""The safety record: what a node must remember across crashes to never equivocate.

The core hands every new record to the runtime in a `PersistSafety` action, and the
runtime makes it durable (fsync) before it sends anything that follows that action.
A node restarted from the last durable record can therefore not sign a vote or a
timeout that contradicts one that left it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.errors import Malformed
from consensus.types import QuorumCert, TimeoutCert, Vote, pack

SAFETY_DATA_VERSION = 1


@dataclass(frozen=True, slots=True)
class SafetyData:
    last_voted_round: int = 0  # highest round voted or timed out in; never vote at or below
    preferred_round: int = 0  # highest parent round of a QC seen in a voted block (2-chain)
    one_chain_round: int = 0  # highest QC round seen in a voted block; timeouts need >= this
    highest_timeout_round: int = 0
    last_vote: Vote | None = None  # re-sent, never re-signed, if its round comes up again
    # The certificate (of round last_voted_round - 1) that justified our last signature.
    # A restarted node re-enters last_voted_round from it; without it, it could wait in
    # a lower round forever, unable to sign a timeout there (the TC that moved everyone
    # on is kept by nobody).
    round_cert: QuorumCert | TimeoutCert | None = None

    def encode(self) -> bytes:
        vote = None if self.last_vote is None else self.last_vote.to_wire()
        cert = self.round_cert
        wire_cert = None if cert is None else [isinstance(cert, TimeoutCert), cert.to_wire()]
        return pack(
            [
                SAFETY_DATA_VERSION,
                self.last_voted_round,
                self.preferred_round,
                self.one_chain_round,
                self.highest_timeout_round,
                vote,
                wire_cert,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> SafetyData:
        try:
            obj: Any = msgpack.unpackb(data, raw=False)
            version, voted, preferred, one_chain, timeout, vote, wire_cert = obj
        except Exception as exc:
            raise Malformed(f"safety record: {exc}") from None
        if version != SAFETY_DATA_VERSION:
            raise Malformed(f"safety record version {version!r}")
        rounds = (voted, preferred, one_chain, timeout)
        if not all(type(r) is int and r >= 0 for r in rounds):
            raise Malformed("safety record: rounds must be unsigned integers")
        last_vote = None if vote is None else Vote.from_wire(vote)
        cert: QuorumCert | TimeoutCert | None = None
        if wire_cert is not None:
            is_tc, body = wire_cert
            cert = TimeoutCert.from_wire(body) if is_tc else QuorumCert.from_wire(body)
        return cls(voted, preferred, one_chain, timeout, last_vote, cert)
