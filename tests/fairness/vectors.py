"""The pinned test vectors of docs/PROTOCOL.md §10, computed from fixed seeds."""

from __future__ import annotations

from typing import Any

from node.fairness.envelope import decode_envelope, open_envelope, seal, verify_envelope
from node.fairness.threshold import DEV_CHAIN_ID, combine, create_share, dealer_keygen
from node.intents import Domain, SignedIntent, format_address, parse_address, sign_intent

PRIVATE_KEY = bytes(31) + b"\x01"
ACCOUNT = parse_address("0x7e5f4552091a69125d5dfcb7b8c2659029395bdf")
DOMAIN = Domain(DEV_CHAIN_ID, parse_address("0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0"))
DEALER_SEED = bytes([0x11]) * 32
ENVELOPE_SEED = bytes([0x22]) * 32
EPOCH = 1
NONCE = 1700000000000
ACTION = {
    "type": "place",
    "market": 0,
    "side": "buy",
    "kind": "limit",
    "price": 3000000,
    "size": 2000000,
    "tif": "gtc",
    "reduce_only": False,
    "cloid": 42,
    "expires_ms": None,
}


def inner_intent() -> SignedIntent:
    return sign_intent(PRIVATE_KEY, ACCOUNT, NONCE, ACTION, DOMAIN)


def compute() -> dict[str, Any]:
    public, shares = dealer_keygen(4, 2, DEALER_SEED, chain_id=DEV_CHAIN_ID)
    raw = seal(inner_intent(), public, EPOCH, DOMAIN, PRIVATE_KEY, ENVELOPE_SEED)
    envelope = decode_envelope(raw)
    signer, r_point = verify_envelope(envelope, DOMAIN)
    decryption = [create_share(s, public, r_point) for s in shares]
    key = combine(public, r_point, decryption[2:]).key
    assert open_envelope(envelope, key) == inner_intent()
    return {
        "chain_id": DOMAIN.chain_id,
        "verifying_contract": format_address(DOMAIN.verifying_contract),
        "dealer_seed": "0x" + DEALER_SEED.hex(),
        "committee_key": "0x" + public.encode().hex(),
        "key_id": "0x" + public.key_id.hex(),
        "private_key": "0x" + PRIVATE_KEY.hex(),
        "signer": format_address(signer),
        "epoch": EPOCH,
        "nonce": NONCE,
        "action": ACTION,
        "inner_signature": "0x" + inner_intent().signature.hex(),
        "envelope_seed": "0x" + ENVELOPE_SEED.hex(),
        "envelope": "0x" + raw.hex(),
        "envelope_bytes": len(raw),
        "envelope_id": "0x" + envelope.digest(DOMAIN).hex(),
        "decryption_shares": ["0x" + d.encode().hex() for d in decryption],
        "aead_key": "0x" + key.hex(),
    }
