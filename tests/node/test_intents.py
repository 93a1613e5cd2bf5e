"""Signed intents: canonical bytes, EIP-712 digests cross-checked against eth-account, the
PROTOCOL.md §4.6 vectors, and every way an intent can be malformed or badly signed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

import msgpack
import pytest
from Crypto.Hash import keccak
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from node.intents import (
    SECP256K1_N,
    BadSignature,
    Domain,
    IntentError,
    MalformedIntent,
    SignedIntent,
    action_hash,
    address_of_private_key,
    check_signer,
    decode_action,
    encode_action,
    format_address,
    intent_digest,
    intent_from_json,
    intent_from_wire,
    intent_to_json,
    intent_to_wire,
    json_item_sizes,
    msgpack_item_sizes,
    oversized_json_items,
    oversized_msgpack_items,
    pack_intent,
    parse_intent_json,
    sign_intent,
    struct_hash,
    unpack_intent,
    validate_action,
    verify_intent,
    verify_rate,
)

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
KEY = bytes(31) + b"\x01"
AGENT_KEY = bytes(31) + b"\x02"
ACCOUNT = address_of_private_key(KEY)
AGENT = address_of_private_key(AGENT_KEY)
# The settlement contract of a fresh localnet (PROTOCOL.md §4.6; test_doc_domain_...).
CONTRACT = bytes.fromhex("9fe46736679d2d9a65f0992f2272de9f3c7fa6e0")
DOMAIN = Domain(31337, CONTRACT)
NONCE = 1_700_000_000_000

ACTIONS: dict[str, dict[str, Any]] = {
    "place": {
        "type": "place",
        "market": 0,
        "side": "buy",
        "kind": "limit",
        "price": 3_000_000,
        "size": 2_000_000,
        "tif": "gtc",
        "reduce_only": False,
        "cloid": 7,
        "expires_ms": None,
    },
    "cancel": {"type": "cancel", "market": 0, "oid": 12},
    "cancel_cloid": {"type": "cancel_cloid", "market": 3, "cloid": 2**64 - 1},
    "cancel_all": {"type": "cancel_all", "market": None},
    "modify": {"type": "modify", "market": 0, "oid": 12, "price": 5, "size": 6},
    "withdraw": {"type": "withdraw", "asset": 1, "amount": 2**64 - 1},
    "approve_agent": {"type": "approve_agent", "agent": AGENT, "name": "bot ü"},
    "revoke_agent": {"type": "revoke_agent", "agent": AGENT},
    "set_leverage": {"type": "set_leverage", "market": 2, "leverage": 5, "isolated": True},
    "add_margin": {"type": "add_margin", "market": 2, "amount": 250_000_000},
    "remove_margin": {"type": "remove_margin", "market": 2, "amount": 2**64 - 1},
    "set_option_margin": {"type": "set_option_margin", "mode": "standard"},
}


def _signed(action: dict[str, Any], key: bytes = KEY, nonce: int = NONCE) -> SignedIntent:
    return sign_intent(key, ACCOUNT, nonce, action, DOMAIN)


def _code(error: pytest.ExceptionInfo[IntentError]) -> str:
    return error.value.code


# ---------------------------------------------------------------------------------------
# Cross-check against eth-account, with the typed data written out independently here


def _typed_data(action: dict[str, Any], account: bytes, nonce: int) -> dict[str, Any]:
    domain = {
        "name": "seqnet",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": format_address(CONTRACT),
    }
    domain_type = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]
    if action["type"] == "withdraw":
        primary = "Withdraw"
        fields = [
            {"name": "account", "type": "address"},
            {"name": "asset", "type": "uint32"},
            {"name": "amount", "type": "uint64"},
            {"name": "nonce", "type": "uint64"},
        ]
        message: dict[str, Any] = {
            "account": format_address(account),
            "asset": action["asset"],
            "amount": action["amount"],
            "nonce": nonce,
        }
    elif action["type"] == "approve_agent":
        primary = "ApproveAgent"
        fields = [
            {"name": "account", "type": "address"},
            {"name": "agent", "type": "address"},
            {"name": "name", "type": "string"},
            {"name": "nonce", "type": "uint64"},
        ]
        message = {
            "account": format_address(account),
            "agent": format_address(action["agent"]),
            "name": action["name"],
            "nonce": nonce,
        }
    elif action["type"] == "revoke_agent":
        primary = "RevokeAgent"
        fields = [
            {"name": "account", "type": "address"},
            {"name": "agent", "type": "address"},
            {"name": "nonce", "type": "uint64"},
        ]
        message = {
            "account": format_address(account),
            "agent": format_address(action["agent"]),
            "nonce": nonce,
        }
    else:
        primary = "Action"
        fields = [{"name": "hash", "type": "bytes32"}]
        # The opaque hash, rebuilt here from msgpack itself rather than encode_action.
        packed = msgpack.packb(action, use_bin_type=True)
        h = keccak.new(digest_bits=256, data=packed + nonce.to_bytes(8, "big") + account)
        message = {"hash": h.digest()}
    return {
        "types": {"EIP712Domain": domain_type, primary: fields},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }


@pytest.mark.parametrize("kind", sorted(ACTIONS))
def test_digest_and_signature_match_eth_account(kind: str) -> None:
    action = ACTIONS[kind]
    intent = _signed(action)
    typed = _typed_data(action, ACCOUNT, NONCE)
    reference = Account.sign_typed_data(KEY, full_message=typed)
    assert intent.digest(DOMAIN) == bytes(reference.message_hash)
    assert intent.signature == bytes(reference.signature)
    signable = encode_typed_data(full_message=typed)
    assert Account.recover_message(signable, signature=intent.signature).lower() == (
        format_address(ACCOUNT)
    )
    entry = verify_intent(intent, DOMAIN)
    assert (entry.account, entry.signer, entry.nonce) == (ACCOUNT, ACCOUNT, NONCE)
    assert entry.action == action
    assert entry.intent_id == intent.digest(DOMAIN)
    assert entry.to_dict() == {
        "account": ACCOUNT,
        "signer": ACCOUNT,
        "nonce": NONCE,
        "action": action,
    }


def test_agent_signs_for_account() -> None:
    intent = _signed(ACTIONS["place"], key=AGENT_KEY)
    entry = verify_intent(intent, DOMAIN)
    assert entry.signer == AGENT and entry.account == ACCOUNT
    assert verify_intent(intent, DOMAIN, is_agent=lambda a, s: (a, s) == (ACCOUNT, AGENT))
    with pytest.raises(BadSignature) as error:
        verify_intent(intent, DOMAIN, is_agent=lambda a, s: False)
    assert _code(error) == "unauthorized_signer"


@pytest.mark.parametrize("kind", ["withdraw", "approve_agent", "revoke_agent"])
def test_agent_may_not_withdraw_or_approve(kind: str) -> None:
    intent = _signed(ACTIONS[kind], key=AGENT_KEY)
    with pytest.raises(BadSignature) as error:
        verify_intent(intent, DOMAIN, is_agent=lambda a, s: True)
    assert _code(error) == "signer_not_account"


# ---------------------------------------------------------------------------------------
# PROTOCOL.md §4.6 vectors


def _doc_vectors() -> dict[str, Any]:
    text = PROTOCOL.read_text()
    match = re.search(
        r"<!-- intent-vectors:begin -->\s*```json\n(.*?)```\s*<!-- intent-vectors:end -->",
        text,
        re.S,
    )
    assert match, "PROTOCOL.md lost its intent test vectors"
    vectors: dict[str, Any] = json.loads(match.group(1))
    return vectors


DOC = _doc_vectors()


def test_doc_domain() -> None:
    domain = Domain(DOC["chain_id"], bytes.fromhex(DOC["verifying_contract"][2:]))
    assert domain == DOMAIN
    assert "0x" + domain.separator.hex() == DOC["domain_separator"]
    assert len(DOC["vectors"]) >= 10
    kinds = {v["intent"]["action"]["type"] for v in DOC["vectors"]}
    assert kinds == set(ACTIONS), "every action type has a vector"


def test_doc_domain_is_the_settlement_contract_of_a_fresh_localnet(tmp_path: Path) -> None:
    """The vectors' verifyingContract is where `localnet up` deploys the Settlement on a
    fresh anvil (node/chain/localchain.py: anvil's first dev account deploys a TestToken
    per non-ETH asset, then the Settlement), not a token: a client that copies the
    vectors' domain signs for that localnet."""
    from contracts.settlement import ETH
    from node.genesis import committee_init, load_genesis

    committee_init(tmp_path, 4)
    tokens = [a for a in load_genesis(tmp_path / "genesis.toml").exchange.assets if a.token != ETH]
    deployer = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")  # anvil's account 0
    nonce = len(tokens)
    assert 0 < nonce < 0x80  # one RLP byte
    created = keccak.new(digest_bits=256, data=b"\xd6\x94" + deployer + bytes([nonce])).digest()
    assert "0x" + created[12:].hex() == DOC["verifying_contract"]


def test_doc_typehashes() -> None:
    """PROTOCOL.md §4.2: each type string and its typehash, recomputed here."""
    full = PROTOCOL.read_text()
    text = full[full.index("### 4.2 ") : full.index("### 4.3 ")]
    rows = dict(re.findall(r"^\| `(\w+)` \| `([0-9a-f]{64})` \|$", text, re.M))
    assert set(rows) == {"EIP712Domain", "Action", "Withdraw", "ApproveAgent", "RevokeAgent"}
    for name, typehash in rows.items():
        signature = re.search(rf"\b({name}\([^)]*\))", text)
        assert signature, f"PROTOCOL.md lost the type string of {name}"
        assert keccak.new(digest_bits=256, data=signature.group(1).encode()).hexdigest() == typehash


@pytest.mark.parametrize("vector", DOC["vectors"], ids=lambda v: v["name"])
def test_doc_vector(vector: dict[str, Any]) -> None:
    intent = intent_from_json(vector["intent"])
    assert intent_to_json(intent) == vector["intent"]
    packed = bytes.fromhex(vector["action_msgpack"][2:])
    assert encode_action(intent.action) == packed
    assert decode_action(packed) == intent.action
    if vector["action_hash"] is not None:
        assert (
            "0x" + action_hash(ACCOUNT, intent.nonce, intent.action).hex()
            == (vector["action_hash"])
        )
    assert (
        "0x" + struct_hash(intent.account, intent.nonce, intent.action).hex()
        == (vector["struct_hash"])
    )
    digest = intent_digest(intent.account, intent.nonce, intent.action, DOMAIN)
    assert "0x" + digest.hex() == vector["digest"]
    key = bytes.fromhex(vector["private_key"][2:])
    assert sign_intent(key, intent.account, intent.nonce, intent.action, DOMAIN) == intent
    entry = verify_intent(intent, DOMAIN)
    assert format_address(entry.signer) == vector["signer"]


# ---------------------------------------------------------------------------------------
# Wrong keys, domains, contents and signatures


def test_forged_signature_recovers_someone_else() -> None:
    intent = _signed(ACTIONS["place"])
    stranger = sign_intent(bytes(31) + b"\x09", ACCOUNT, NONCE, ACTIONS["place"], DOMAIN)
    assert verify_intent(stranger, DOMAIN).signer != ACCOUNT
    with pytest.raises(BadSignature) as error:
        verify_intent(stranger, DOMAIN, is_agent=lambda a, s: False)
    assert _code(error) == "unauthorized_signer"
    assert verify_intent(intent, DOMAIN).signer == ACCOUNT


@pytest.mark.parametrize(
    "domain",
    [Domain(1, CONTRACT), Domain(31337, bytes(20)), Domain(31337, CONTRACT, version="2")],
    ids=["chain_id", "contract", "version"],
)
def test_wrong_domain(domain: Domain) -> None:
    intent = _signed(ACTIONS["cancel"])
    assert verify_intent(intent, domain).signer != ACCOUNT
    with pytest.raises(BadSignature) as error:
        verify_intent(intent, domain, is_agent=lambda a, s: False)
    assert _code(error) == "unauthorized_signer"
    withdraw = _signed(ACTIONS["withdraw"])
    with pytest.raises(BadSignature) as error:
        verify_intent(withdraw, domain)
    assert _code(error) == "signer_not_account"


@pytest.mark.parametrize(
    "change",
    [{"price": 3_000_010}, {"side": "sell"}, {"cloid": None}, {"reduce_only": True}],
)
def test_tampered_action(change: dict[str, Any]) -> None:
    intent = _signed(ACTIONS["place"])
    tampered = SignedIntent(
        intent.account, intent.nonce, {**intent.action, **change}, intent.signature
    )
    assert verify_intent(tampered, DOMAIN).signer != ACCOUNT


def test_tampered_nonce_and_account() -> None:
    intent = _signed(ACTIONS["withdraw"])
    for other in (
        SignedIntent(intent.account, intent.nonce + 1, intent.action, intent.signature),
        SignedIntent(AGENT, intent.nonce, intent.action, intent.signature),
    ):
        with pytest.raises(BadSignature) as error:
            verify_intent(other, DOMAIN)
        assert _code(error) == "signer_not_account"


def _with_signature(intent: SignedIntent, r: int, s: int, v: int) -> SignedIntent:
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    return SignedIntent(intent.account, intent.nonce, intent.action, signature)


def test_high_s_is_refused() -> None:
    intent = _signed(ACTIONS["cancel"])
    r = int.from_bytes(intent.signature[:32], "big")
    s = int.from_bytes(intent.signature[32:64], "big")
    v = intent.signature[64]
    # (r, n - s, flipped v) is the malleated twin: valid ECDSA, refused here.
    twin = _with_signature(intent, r, SECP256K1_N - s, 55 - v)
    with pytest.raises(BadSignature) as error:
        verify_intent(twin, DOMAIN)
    assert _code(error) == "high_s"


def test_v_forms() -> None:
    intent = _signed(ACTIONS["cancel"])
    r = int.from_bytes(intent.signature[:32], "big")
    s = int.from_bytes(intent.signature[32:64], "big")
    v = intent.signature[64]
    assert verify_intent(_with_signature(intent, r, s, v - 27), DOMAIN).signer == ACCOUNT
    for bad in (2, 26, 29, 35, 255):
        with pytest.raises(BadSignature) as error:
            verify_intent(_with_signature(intent, r, s, bad), DOMAIN)
        assert _code(error) == "bad_v"


@pytest.mark.parametrize("r_s", [(0, 1), (1, 0), (SECP256K1_N, 1), (2**256 - 1, 1)])
def test_r_s_out_of_range(r_s: tuple[int, int]) -> None:
    intent = _with_signature(_signed(ACTIONS["cancel"]), r_s[0], r_s[1], 27)
    with pytest.raises(BadSignature) as error:
        verify_intent(intent, DOMAIN)
    assert _code(error) == "invalid_signature"


def test_unrecoverable_signature() -> None:
    # r = 5 has no point on secp256k1 with that x coordinate: recovery fails.
    intent = _with_signature(_signed(ACTIONS["cancel"]), 5, 1, 27)
    with pytest.raises(BadSignature) as error:
        verify_intent(intent, DOMAIN)
    assert _code(error) == "invalid_signature"


# ---------------------------------------------------------------------------------------
# Malformed fields and inputs


def _json_intent(**changes: Any) -> dict[str, Any]:
    base = intent_to_json(_signed(ACTIONS["place"]))
    action = changes.pop("action", None)
    if action is not None:
        base["action"] = {**base["action"], **action}
    return {**base, **changes}


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("price_str", {"action": {"price": "1"}}, "bad_type"),
    ("price_float", {"action": {"price": 1.0}}, "bad_type"),
    ("price_bool", {"action": {"price": True}}, "bad_type"),
    ("price_negative", {"action": {"price": -1}}, "out_of_range"),
    ("size_u64_overflow", {"action": {"size": 2**64}}, "out_of_range"),
    ("market_u32_overflow", {"action": {"market": 2**32}}, "out_of_range"),
    ("reduce_only_int", {"action": {"reduce_only": 0}}, "bad_type"),
    ("side_enum", {"action": {"side": "BUY"}}, "bad_value"),
    ("tif_enum", {"action": {"tif": "day"}}, "bad_value"),
    ("market_gtc", {"action": {"kind": "market"}}, "bad_value"),
    ("unknown_type", {"action": {"type": "deposit"}}, "unknown_action"),
    ("unknown_field", {"action": {"leverage": 10}}, "unknown_field"),
    ("nonce_negative", {"nonce": -1}, "out_of_range"),
    ("nonce_overflow", {"nonce": 2**64}, "out_of_range"),
    ("nonce_str", {"nonce": "1"}, "bad_type"),
    ("account_short", {"account": "0x" + "11" * 19}, "bad_address"),
    ("account_no_prefix", {"account": "11" * 21}, "bad_address"),
    ("account_not_hex", {"account": "0x" + "zz" * 20}, "bad_address"),
    ("account_spaces", {"account": "0x" + "11 " * 13 + "1"}, "bad_address"),
    ("signature_short", {"signature": "0x" + "11" * 64}, "bad_signature_length"),
    ("signature_not_hex", {"signature": "0x" + "zz" * 65}, "bad_encoding"),
    ("signature_spaces", {"signature": "0x" + "11 " * 42 + "1111"}, "bad_signature_length"),
    ("extra_key", {"chain_id": 1}, "unknown_field"),
]


@pytest.mark.parametrize(
    ("changes", "code"), [(c, k) for _, c, k in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_json(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(MalformedIntent) as error:
        intent_from_json(_json_intent(**changes))
    assert _code(error) == code
    assert error.value.message


def test_missing_fields() -> None:
    obj = _json_intent()
    del obj["action"]["cloid"]
    with pytest.raises(MalformedIntent) as error:
        intent_from_json(obj)
    assert (_code(error), error.value.field) == ("missing_field", "cloid")
    obj = _json_intent()
    del obj["nonce"]
    with pytest.raises(MalformedIntent) as error:
        intent_from_json(obj)
    assert (_code(error), error.value.field) == ("missing_field", "nonce")
    with pytest.raises(MalformedIntent) as error:
        intent_from_json([obj])
    assert _code(error) == "bad_type"


def test_agent_name_and_address() -> None:
    approve = intent_to_json(_signed(ACTIONS["approve_agent"]))
    assert intent_from_json(approve).action["agent"] == AGENT
    for name, code in (("x" * 33, "out_of_range"), ("é" * 17, "out_of_range"), (3, "bad_type")):
        with pytest.raises(MalformedIntent) as error:
            intent_from_json({**approve, "action": {**approve["action"], "name": name}})
        assert _code(error) == code
    with pytest.raises(MalformedIntent) as error:
        validate_action({**ACTIONS["approve_agent"], "agent": b"\x01" * 19})
    assert _code(error) == "bad_address"


def test_json_text_limits() -> None:
    text = json.dumps(_json_intent())
    assert parse_intent_json(text) == parse_intent_json(text.encode())
    with pytest.raises(MalformedIntent) as error:
        parse_intent_json(text[:-1] + " " * 3000 + "}")
    assert _code(error) == "too_large"
    for bad in (text[:50], "nan", b"\xff\xfe", "[" * 1000 + "]" * 1000):
        with pytest.raises(MalformedIntent) as error:
            parse_intent_json(bad)
        assert _code(error) in ("bad_encoding", "bad_type", "too_deep")
    duplicated = text[:-1] + ', "nonce": 5}'
    with pytest.raises(MalformedIntent) as error:
        parse_intent_json(duplicated)
    assert _code(error) == "duplicate_key"
    with pytest.raises(MalformedIntent) as error:
        parse_intent_json(text.replace(f'"nonce": {NONCE}', f'"nonce": {NONCE}.0'))
    assert _code(error) == "bad_type"


def test_msgpack_wire_limits() -> None:
    intent = _signed(ACTIONS["approve_agent"])
    raw = pack_intent(intent)
    assert unpack_intent(raw) == intent
    assert intent_from_wire(msgpack.unpackb(raw)) == intent
    cases = [
        (raw + b"\x00" * 1024, "too_large"),
        (raw[:-3], "bad_encoding"),
        (b"\xc1", "bad_encoding"),
        (msgpack.packb([1, 2]), "bad_type"),
        (msgpack.packb({**intent_to_wire(intent), "account": "0x" + ACCOUNT.hex()}), "bad_address"),
        (
            msgpack.packb({**intent_to_wire(intent), "signature": b"\x00" * 64}),
            "bad_signature_length",
        ),
        (msgpack.packb({**intent_to_wire(intent), "nonce": 1.5}), "bad_type"),
        (msgpack.packb({1: 2}), "bad_encoding"),  # int map keys: refused by strict_map_key
        (msgpack.packb(msgpack.ExtType(1, b"x")), "bad_encoding"),
    ]
    for data, code in cases:
        with pytest.raises(MalformedIntent) as error:
            unpack_intent(data)
        assert _code(error) == code, data


# The per-intent limits inside a batch (§4.5; the intake's use: tests/node/test_intake.py)

ITEMS: list[Any] = [
    {"a": 'x,]}["{:\\"', "b": [1, {"c": []}]},
    {"\u00e9": "\u00e9"},
    [],
    {},
    3,
    "s",
    None,
]


@pytest.mark.parametrize(
    "dump",
    [
        lambda obj: json.dumps(obj, separators=(",", ":")),
        lambda obj: json.dumps(obj),  # ", " and ": "
        lambda obj: json.dumps(obj, ensure_ascii=False),
    ],
)
def test_json_item_sizes_are_the_elements_texts(dump: Any) -> None:
    doc = {"id": 1, "other": {"intents": [1, 2]}, "intents": ITEMS, "wait": None}
    assert json_item_sizes(dump(doc).encode(), "intents") == [
        len(dump(item).encode()) for item in ITEMS
    ]


def test_json_item_sizes_find_the_key_however_it_is_written() -> None:
    raw = b'{ "\\u0069ntents" :\n [ {"a":1}  ,\n\t{"b" : 2} ] }'
    assert json_item_sizes(raw, "intents") == [7, 9]  # the whitespace around not counted
    assert json_item_sizes(b'{"intents": [ ]}', "intents") == []
    assert json_item_sizes(b'{"intents": 3}', "intents") is None
    assert json_item_sizes(b'{"x": {"intents": [1]}}', "intents") is None
    assert json_item_sizes(b"[1, 2]", "intents") is None


def test_oversized_json_items_are_found_however_the_batch_is_laid_out() -> None:
    intent = _json_intent()
    padded = json.dumps(intent).replace("{", "{" + " " * 3000, 1)  # a 3.4 KB intent
    assert len(padded) > 3000
    compact = json.dumps({"intents": [intent] * 1500}, separators=(",", ":"))
    assert oversized_json_items(compact, [intent] * 1500) == []
    pretty = json.dumps({"intents": [intent] * 3}, indent=2)
    assert oversized_json_items(pretty, [intent] * 3) == []
    batch = '{"intents": [' + ", ".join([json.dumps(intent), padded, json.dumps(intent)]) + "]}"
    assert oversized_json_items(batch, json.loads(batch)["intents"]) == [1]
    assert oversized_json_items(batch.encode(), json.loads(batch)["intents"]) == [1]
    # Just over and just under, when the rest of the batch could hide either.
    exact = json.dumps(intent)
    for extra, over in ((2048 - len(exact), []), (2049 - len(exact), [0])):
        text = '{"intents":[' + exact.replace("{", "{" + " " * extra, 1) + "," + exact + "]}"
        assert oversized_json_items(text, json.loads(text)["intents"]) == over


def test_oversized_msgpack_items_are_found_in_maps_and_left_to_unpack_intent_in_bytes() -> None:
    intent = _signed(ACTIONS["place"])
    wire = intent_to_wire(intent)
    packer = msgpack.Packer(use_bin_type=True)
    # A map with its signature repeated 20 times (unpacking keeps the last): valid, 1.5 KB.
    padded = packer.pack_map_header(4 + 19)
    for key in ("action", "account", "nonce"):
        padded += packer.pack(key) + packer.pack(wire[key])
    padded += (packer.pack("signature") + packer.pack(intent.signature)) * 20
    assert len(padded) > 1024 and intent_from_wire(msgpack.unpackb(padded)) == intent
    message = (
        packer.pack_map_header(2)
        + packer.pack("id")
        + packer.pack(7)
        + packer.pack("intents")
        + packer.pack_array_header(3)
        + packer.pack(wire)
        + padded
        + packer.pack(pack_intent(intent))
    )
    items = msgpack.unpackb(message)["intents"]
    sizes = msgpack_item_sizes(message, "intents")
    assert sizes == [len(packer.pack(wire)), len(padded), len(pack_intent(intent)) + 2]
    assert oversized_msgpack_items(message, items) == [1]
    plain = msgpack.packb({"intents": [wire] * 100, "id": 1})
    assert oversized_msgpack_items(plain, [wire] * 100) == []
    assert msgpack_item_sizes(msgpack.packb({"intents": 3}), "intents") is None


def test_decode_action_requires_canonical_bytes() -> None:
    action = ACTIONS["cancel"]
    canonical = encode_action(action)
    reordered = msgpack.packb({"market": 0, "type": "cancel", "oid": 12})
    wide_int = canonical[:-1] + b"\xcf" + (12).to_bytes(8, "big")
    for data in (reordered, wide_int):
        assert msgpack.unpackb(data) == action
        with pytest.raises(MalformedIntent) as error:
            decode_action(data)
        assert _code(error) == "not_canonical"
    # An envelope in another key order still verifies: the hash input is re-encoded.
    intent = _signed(action)
    wire = intent_to_wire(intent)
    shuffled = {"signature": wire["signature"], "nonce": wire["nonce"]}
    shuffled |= {"account": wire["account"], "action": {"oid": 12, "market": 0, "type": "cancel"}}
    assert verify_intent(unpack_intent(msgpack.packb(shuffled)), DOMAIN).signer == ACCOUNT


# ---------------------------------------------------------------------------------------
# Properties


u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
places = st.fixed_dictionaries(
    {
        "type": st.just("place"),
        "market": u32,
        "side": st.sampled_from(["buy", "sell"]),
        "kind": st.just("limit"),
        "price": u64,
        "size": u64,
        "tif": st.sampled_from(["gtc", "ioc", "fok", "post"]),
        "reduce_only": st.booleans(),
        "cloid": st.none() | u64,
        "expires_ms": st.none() | u64,
    }
)
any_action = st.one_of(
    places,
    st.fixed_dictionaries({"type": st.just("cancel"), "market": u32, "oid": u64}),
    st.fixed_dictionaries({"type": st.just("cancel_all"), "market": st.none() | u32}),
    st.fixed_dictionaries(
        {"type": st.just("withdraw"), "asset": u32, "amount": u64},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("approve_agent"),
            "agent": st.binary(min_size=20, max_size=20),
            "name": st.text(max_size=8),
        }
    ),
)


@settings(max_examples=60, deadline=None)
@given(action=any_action, nonce=u64)
def test_round_trips_and_eth_account(action: dict[str, Any], nonce: int) -> None:
    intent = sign_intent(KEY, ACCOUNT, nonce, action, DOMAIN)
    assert decode_action(encode_action(action)) == action
    assert unpack_intent(pack_intent(intent)) == intent
    assert parse_intent_json(json.dumps(intent_to_json(intent))) == intent
    assert verify_intent(intent, DOMAIN).signer == ACCOUNT
    # hypothesis may build the dict in any key order; the reference packs it as given.
    canonical = {k: action[k] for k in ACTIONS[action["type"]]}
    reference = Account.sign_typed_data(KEY, full_message=_typed_data(canonical, ACCOUNT, nonce))
    assert intent.signature == bytes(reference.signature)


def test_verify_rate_is_positive() -> None:
    assert verify_rate(50) > 0


def test_deep_json_nesting_is_refused_before_parsing() -> None:
    import sys

    from node.intents import check_json_depth, parse_json_bounded

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200_000)  # what some tools do; the C scanner would crash
    try:
        for body in (b"[" * 150_000 + b"]" * 150_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
            with pytest.raises(MalformedIntent) as info:
                parse_json_bounded(body, 10**7)
            assert info.value.code == "too_deep"
    finally:
        sys.setrecursionlimit(old)
    check_json_depth(b'{"s": "[[[[{{{{ \\" ]]"}')  # brackets inside strings do not count


def _json_text() -> st.SearchStrategy[str]:
    """JSON texts as a client might write them: objects that may repeat a key, floats,
    keys and strings holding colons, quotes and escapes, and random spacing."""
    space = st.sampled_from(["", " ", "\n  "])
    key = st.sampled_from(["a", "b", "k:", 'q"', "\\u0041", "é"]).map(lambda k: f'"{k}"')
    scalar = st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["true", "false", "null", '"x:y"', '"a\\"b:"', '"\\\\"', "NaN"]),
    )

    def containers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        members = st.lists(st.tuples(key, space, inner), max_size=4).map(
            lambda ms: "{" + ",".join(f"{k}{s}:{s}{v}" for k, s, v in ms) + "}"
        )
        items = st.lists(inner, max_size=4).map(lambda vs: "[" + ", ".join(vs) + "]")
        return st.one_of(members, items)

    return st.recursive(scalar, containers, max_leaves=12)


@given(_json_text())
@settings(max_examples=400, deadline=None)
def test_json_fast_path_answers_as_the_refusing_stdlib_parser(text: str) -> None:
    """parse_json_bounded takes orjson's result only when it must equal the stdlib
    scanner's with the refusing hooks; anything else gets the stdlib answer."""
    from node.intents import _no_duplicate_keys, _no_floats, parse_json_bounded

    def reference() -> tuple[str, Any]:
        try:
            value = json.loads(
                text,
                object_pairs_hook=_no_duplicate_keys,
                parse_float=_no_floats,
                parse_constant=_no_floats,
            )
        except MalformedIntent as error:
            return "error", error.code
        except ValueError:
            return "error", "bad_encoding"
        return "ok", value

    try:
        got: tuple[str, Any] = ("ok", parse_json_bounded(text.encode(), 10**6))
    except MalformedIntent as error:
        got = ("error", error.code)
    assert got == reference()


# ---------------------------------------------------------------------------------------
# Bad copies, forged signers and depth limits (issue 12, findings 6, 7 and 9)


def _flip_bit(signature: bytes, bit: int) -> bytes:
    flipped = bytearray(signature)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@settings(max_examples=60, deadline=None)
@given(bit=st.integers(0, 64 * 8 - 1))
def test_a_bit_flipped_copy_has_the_id_and_never_the_signer(bit: int) -> None:
    """A copy of an intent with one bit of r or s flipped has the genuine intent's id
    (the digest does not cover the signature) but recovers some other key, or none: so
    a node keys nothing on the id alone, and the signer check refuses the copy."""
    from matching.engine import Engine
    from tests.matching.helpers import genesis

    engine = Engine(genesis())
    genuine = _signed(ACTIONS["cancel"])
    copy = SignedIntent(ACCOUNT, NONCE, genuine.action, _flip_bit(genuine.signature, bit))
    assert copy.digest(DOMAIN) == genuine.digest(DOMAIN)
    try:
        entry = verify_intent(copy, DOMAIN)
    except BadSignature:
        return  # out of range, high s, or no key recovers
    assert entry.signer != ACCOUNT and entry.intent_id == genuine.digest(DOMAIN)
    with pytest.raises(BadSignature) as error:
        check_signer(entry, engine.is_authorized)
    assert _code(error) == "unauthorized_signer"
    check_signer(verify_intent(genuine, DOMAIN), engine.is_authorized)


def test_check_signer_follows_approval_and_revocation() -> None:
    from matching.engine import Engine
    from tests.matching.helpers import genesis

    engine = Engine(genesis())
    by_agent = verify_intent(_signed(ACTIONS["place"], key=AGENT_KEY), DOMAIN)
    with pytest.raises(BadSignature) as error:
        check_signer(by_agent, engine.is_authorized)
    assert _code(error) == "unauthorized_signer"
    approval = verify_intent(_signed(ACTIONS["approve_agent"]), DOMAIN).to_dict()
    engine.apply_block(NONCE, [approval])
    check_signer(by_agent, engine.is_authorized)
    revocation = verify_intent(_signed(ACTIONS["revoke_agent"], nonce=NONCE + 1), DOMAIN)
    engine.apply_block(NONCE + 1, [revocation.to_dict()])
    with pytest.raises(BadSignature):
        check_signer(by_agent, engine.is_authorized)


def test_deeply_nested_msgpack_intent_is_malformed_not_a_crash() -> None:
    """Validation never walks into a value and its messages never repr one: a value
    nested as deep as the size limit allows is a schema error with a short message.
    (An intent map in a WebSocket binary message has no size limit of its own; there a
    1,020-deep `type` once raised RecursionError: tests/node/test_api.py.)"""
    intent = intent_to_wire(_signed(ACTIONS["cancel"]))
    room = 1024 - len(msgpack.packb({**intent, "action": {**ACTIONS["cancel"], "oid": 1}}))
    for depth in (40, 500, room):  # `room`: as deep as the size limit allows (868)
        deep: Any = 1
        for _ in range(depth):
            deep = [deep]
        for action in ({"type": deep}, {**ACTIONS["cancel"], "oid": deep}):
            data = msgpack.packb({**intent, "action": action})
            assert len(data) <= 1024
            with pytest.raises(MalformedIntent) as error:
                unpack_intent(data)
            assert _code(error) in ("unknown_action", "bad_type")
            assert len(str(error.value)) < 200


def test_json_depth_limit_is_exact() -> None:
    from node.intents import MAX_JSON_DEPTH, check_json_depth

    check_json_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_json_depth(b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)
    for deeper in (b"[" * 33 + b"]" * 33, b'{"a":' * 33 + b"1" + b"}" * 33):
        with pytest.raises(MalformedIntent) as error:
            check_json_depth(deeper)
        assert _code(error) == "too_deep"
