"""Signing vectors of the perpetual actions (set_leverage, add_margin, remove_margin),
made by the Python SDK's signing code (node/intents.py) and committed for the TypeScript
client's unit test (clients/typescript/test/unit/perp-vectors.test.ts), which signs the
same intents with viem and must get the same bytes, hashes and signatures. The domain is
PROTOCOL.md §4.6's; the form of a vector is §4.6's.

Regenerate after a deliberate change: `python -m tests.api.test_perp_vectors`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.intents import (
    Domain,
    action_hash,
    address_of_private_key,
    encode_action,
    format_address,
    intent_digest,
    intent_to_json,
    sign_intent,
    struct_hash,
    validate_action,
    verify_intent,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "clients" / "typescript" / "test" / "unit" / "perp-vectors.json"
DOMAIN = Domain(31337, bytes.fromhex("9fe46736679d2d9a65f0992f2272de9f3c7fa6e0"))
KEY = bytes(range(1, 33))  # a fixed test key
AGENT_KEY = bytes(range(33, 65))
NONCE = 1_700_000_000_000
BTC_PERP = 2

CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("set_leverage_cross", {"type": "set_leverage", "market": BTC_PERP, "leverage": 5,
                            "isolated": False}, False),
    ("set_leverage_isolated", {"type": "set_leverage", "market": BTC_PERP, "leverage": 10,
                               "isolated": True}, False),
    ("add_margin", {"type": "add_margin", "market": BTC_PERP, "amount": 250_000_000}, False),
    ("remove_margin", {"type": "remove_margin", "market": BTC_PERP,
                       "amount": 2**64 - 1}, False),
    ("set_leverage_by_agent", {"type": "set_leverage", "market": 4_294_967_295,
                               "leverage": 1, "isolated": True}, True),
]  # fmt: skip


def vectors() -> dict[str, Any]:
    account = address_of_private_key(KEY)
    out = []
    for i, (name, raw, by_agent) in enumerate(CASES):
        key = AGENT_KEY if by_agent else KEY
        action = validate_action(raw)
        nonce = NONCE + i
        intent = sign_intent(key, account, nonce, action, DOMAIN)
        assert format_address(verify_intent(intent, DOMAIN).signer) == format_address(
            address_of_private_key(key)
        )
        out.append(
            {
                "name": name,
                "private_key": "0x" + key.hex(),
                "signer": format_address(address_of_private_key(key)),
                "intent": intent_to_json(intent),
                "action_msgpack": "0x" + encode_action(action).hex(),
                "action_hash": "0x" + action_hash(account, nonce, action).hex(),
                "struct_hash": "0x" + struct_hash(account, nonce, action).hex(),
                "digest": "0x" + intent_digest(account, nonce, action, DOMAIN).hex(),
            }
        )
    return {
        "chain_id": DOMAIN.chain_id,
        "verifying_contract": format_address(DOMAIN.verifying_contract),
        "vectors": out,
    }


def render(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


def test_committed_perp_vectors_are_the_python_signatures() -> None:
    assert COMMITTED.read_text() == render(vectors()), (
        "perp-vectors.json is stale: run `python -m tests.api.test_perp_vectors`"
    )


if __name__ == "__main__":
    COMMITTED.write_text(render(vectors()))
