"""Typed errors for invalid consensus messages.

A peer's protocol violation is an exception raised at the boundary (decoding and
`verifier.Verifier`), caught by the runtime and turned into a log line, a metric or a
disconnect. The core itself never sees an invalid message and never raises these.
"""

from __future__ import annotations


class InvalidMessage(Exception):
    """Base class: the message must be dropped; the sender misbehaved or is buggy."""


class Malformed(InvalidMessage):
    """Bytes that do not decode to a well-formed message (types, lengths, limits)."""


class UnknownSigner(InvalidMessage):
    """An author or signer index outside the committee."""


class WrongSender(InvalidMessage):
    """A vote or timeout whose author is not the authenticated peer that sent it."""


class WrongProposer(InvalidMessage):
    """A proposal whose author is not the leader of its round."""


class BadSignature(InvalidMessage):
    """A signature that does not verify under the signer's committee key."""


class WrongRound(InvalidMessage):
    """Rounds that contradict each other (a block not above its QC, a TC for the wrong
    round, a timeout below its own QC, ...)."""


class BadQC(InvalidMessage):
    """A quorum certificate without a quorum of distinct valid signatures."""


class BadTC(InvalidMessage):
    """A timeout certificate without a quorum, or whose high QC does not match."""
