"""Encrypted intents for traders (docs/PROTOCOL.md §10): sign an action, seal it to the
committee's threshold key, sign the envelope.

The node learns who sent an envelope (to rate-limit it) but not what it says until the
block that orders it has committed. `Client.place(..., encrypted=True)` (and `cancel`,
`submit`) and `seqnet trade place --encrypted` use this; `encrypt_action` makes the
bytes for POST /v1/intents/encrypted yourself. Like the rest of the SDK this imports
only pure node modules (`node.intents`, `node.fairness`), never the runtime.

    envelope = encrypt_action(key, account, nonce, action, domain, committee_key, epoch)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import coincurve

from node.fairness.envelope import decode_envelope, seal
from node.fairness.threshold import ThresholdPublicKey
from node.intents import Domain, SignedIntent, sign_intent

__all__ = ["encrypt_action", "encrypt_intent", "parse_committee_key"]


def parse_committee_key(text_or_bytes: str | bytes) -> ThresholdPublicKey:
    """The committee key as the API and the genesis file publish it (0x-hex or bytes)."""
    if isinstance(text_or_bytes, str):
        text = text_or_bytes.removeprefix("0x")
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise ValueError("the committee key must be hex") from None
    else:
        data = text_or_bytes
    return ThresholdPublicKey.decode(data)


def encrypt_intent(
    intent: SignedIntent,
    committee_key: ThresholdPublicKey,
    epoch: int,
    domain: Domain,
    private_key: bytes | coincurve.PrivateKey,
    *,
    seed: bytes | None = None,
) -> bytes:
    """Seal an already signed intent; `private_key` signs the envelope (the account's key
    or an approved agent's). `seed` is for test vectors only: leave it None."""
    envelope = seal(
        intent, committee_key, epoch, domain, private_key, os.urandom(32) if seed is None else seed
    )
    decode_envelope(envelope)  # the bytes we send pass the node's strict decoder
    return envelope


def encrypt_action(
    private_key: bytes | coincurve.PrivateKey,
    account: bytes,
    nonce: int,
    action: Mapping[str, Any],
    domain: Domain,
    committee_key: ThresholdPublicKey,
    epoch: int,
    *,
    seed: bytes | None = None,
) -> bytes:
    """Sign `action` as a §4 intent and seal it: the envelope bytes to submit."""
    intent = sign_intent(private_key, account, nonce, action, domain)
    return encrypt_intent(intent, committee_key, epoch, domain, private_key, seed=seed)
