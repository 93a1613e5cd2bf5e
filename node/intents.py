"""Signed trader intents: the bytes a trader signs and how a node checks them.

This room owns the trader-facing format of docs/PROTOCOL.md §2 and §4: the canonical
msgpack encoding of an action, the EIP-712 digest a wallet signs, the JSON and msgpack
wire forms, and signature recovery. It is the boundary check the mempool and the block
validator run once per intent; what comes out (an `Entry`) is verified.

What it does not decide: whether a recovered signer other than the account is an
approved agent (that is replicated state, owned by matching/), whether a nonce is fresh,
or whether an order fits its market. Those are the engine's outcomes, not format errors.

Speed matters (every node recovers every signature), so the EIP-712 digest is computed
here from cached type hashes with safe-pysha3, and recovery goes straight to coincurve;
eth_account is used only by the tests, as a cross-check.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Union

import coincurve
import msgpack
import msgspec
import orjson
import sha3
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT

# ---------------------------------------------------------------------------------------
# Limits and constants

MAX_INTENT_MSGPACK_BYTES: Final = 1024
MAX_INTENT_JSON_BYTES: Final = 2048
MAX_AGENT_NAME_BYTES: Final = 32
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = SECP256K1_N // 2
_N_BYTES: Final = SECP256K1_N.to_bytes(32, "big")
_HALF_N_BYTES: Final = _HALF_N.to_bytes(32, "big")
_ZERO_WORD: Final = bytes(32)
# libsecp256k1 through coincurve's cffi module, called directly on the hot path (one
# recovery per intent per member): coincurve's PublicKey wrappers cost ~10 µs a call on
# top of the ~45 µs the library takes.
_CTX: Final = GLOBAL_CONTEXT.ctx
_parse_recoverable: Final = _lib.secp256k1_ecdsa_recoverable_signature_parse_compact
_recover: Final = _lib.secp256k1_ecdsa_recover
_serialize_public: Final = _lib.secp256k1_ec_pubkey_serialize
_UNCOMPRESSED: Final = _lib.SECP256K1_EC_UNCOMPRESSED
ZERO_ADDRESS: Final = bytes(20)

TRADING_ACTIONS: Final = frozenset({"place", "cancel", "cancel_cloid", "cancel_all", "modify"})
# Actions only the account itself may sign (never an agent).
ACCOUNT_ONLY_ACTIONS: Final = frozenset({"withdraw", "approve_agent", "revoke_agent"})


def keccak256(data: bytes) -> bytes:
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


# ---------------------------------------------------------------------------------------
# Errors: a client's protocol violation is a typed exception with a machine-readable code.


class IntentError(ValueError):
    """Base of every rejection of an intent; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


class MalformedIntent(IntentError):
    """The bytes or fields do not form a valid intent."""


class BadSignature(IntentError):
    """The signature is not a valid, canonical signature by an acceptable key."""


# ---------------------------------------------------------------------------------------
# Addresses


def parse_address(text: str, what: str = "address") -> bytes:
    """`0x` + 40 hex digits (any case) -> 20 bytes."""
    if not isinstance(text, str) or len(text) != 42 or text[:2] not in ("0x", "0X"):
        raise MalformedIntent("bad_address", f"{what} must be 0x + 40 hex digits", what)
    try:
        address = bytes.fromhex(text[2:])
    except ValueError:
        raise MalformedIntent("bad_address", f"{what} is not hex", what) from None
    if len(address) != 20:  # fromhex skips spaces
        raise MalformedIntent("bad_address", f"{what} is not 40 hex digits", what)
    return address


def format_address(address: bytes) -> str:
    return "0x" + address.hex()


def address_of_public_key(public_key: coincurve.PublicKey) -> bytes:
    return _address_of_uncompressed(public_key.format(compressed=False))


def _address_of_uncompressed(key: bytes) -> bytes:
    """Ethereum address of a 65-byte uncompressed secp256k1 key (0x04 ‖ x ‖ y)."""
    return keccak256(key[1:])[12:]


def address_of_private_key(private_key: bytes | coincurve.PrivateKey) -> bytes:
    key = private_key if isinstance(private_key, coincurve.PrivateKey) else _private(private_key)
    return address_of_public_key(key.public_key)


def _private(secret: bytes) -> coincurve.PrivateKey:
    if len(secret) != 32:
        raise ValueError("a secp256k1 private key is 32 bytes")
    return coincurve.PrivateKey(secret)


# ---------------------------------------------------------------------------------------
# Actions: schema, validation, canonical encoding (PROTOCOL.md §2)

Action = dict[str, Any]
_Check = Callable[[Any, str, bool], Any]


def _u(high: int) -> _Check:
    def check(value: Any, name: str, _json: bool) -> int:
        if type(value) is not int:  # bool is an int subclass: refuse it
            raise MalformedIntent("bad_type", f"{name} must be an unsigned integer", name)
        if not 0 <= value <= high:
            raise MalformedIntent("out_of_range", f"{name} out of range 0..{high}", name)
        return value

    return check


def _optional(inner: _Check) -> _Check:
    def check(value: Any, name: str, as_json: bool) -> Any:
        return None if value is None else inner(value, name, as_json)

    return check


def _enum(*allowed: str) -> _Check:
    choices = frozenset(allowed)

    def check(value: Any, name: str, _json: bool) -> str:
        if not isinstance(value, str) or value not in choices:
            raise MalformedIntent("bad_value", f"{name} must be one of {sorted(choices)}", name)
        return value

    return check


def _bool(value: Any, name: str, _json: bool) -> bool:
    if type(value) is not bool:
        raise MalformedIntent("bad_type", f"{name} must be a boolean", name)
    return value


def _address(value: Any, name: str, as_json: bool) -> bytes:
    if as_json:
        return parse_address(value, name)
    if type(value) is not bytes or len(value) != 20:
        raise MalformedIntent("bad_address", f"{name} must be 20 bytes", name)
    return value


def _agent_name(value: Any, name: str, _json: bool) -> str:
    if not isinstance(value, str):
        raise MalformedIntent("bad_type", f"{name} must be a string", name)
    if len(value.encode()) > MAX_AGENT_NAME_BYTES:
        raise MalformedIntent("out_of_range", f"{name} longer than 32 bytes", name)
    return value


_u32, _u64 = _u(U32_MAX), _u(U64_MAX)

# type -> fields after "type", in canonical order, each with its check.
SCHEMA: Final[dict[str, tuple[tuple[str, _Check], ...]]] = {
    "place": (
        ("market", _u32),
        ("side", _enum("buy", "sell")),
        ("kind", _enum("limit", "market")),
        ("price", _u64),
        ("size", _u64),
        ("tif", _enum("gtc", "ioc", "fok", "post")),
        ("reduce_only", _bool),
        ("cloid", _optional(_u64)),
        ("expires_ms", _optional(_u64)),
    ),
    "cancel": (("market", _u32), ("oid", _u64)),
    "cancel_cloid": (("market", _u32), ("cloid", _u64)),
    "cancel_all": (("market", _optional(_u32)),),
    "modify": (("market", _u32), ("oid", _u64), ("price", _u64), ("size", _u64)),
    # Perpetual futures (docs/MATCHING.md): trading actions, hashed like the others.
    "set_leverage": (("market", _u32), ("leverage", _u32), ("isolated", _bool)),
    "add_margin": (("market", _u32), ("amount", _u64)),
    "remove_margin": (("market", _u32), ("amount", _u64)),
    # Options (docs/MATCHING.md "Options"): the account's option margin mode.
    "set_option_margin": (("mode", _enum("portfolio", "standard")),),
    "withdraw": (("asset", _u32), ("amount", _u64)),
    "approve_agent": (("agent", _address), ("name", _agent_name)),
    "revoke_agent": (("agent", _address),),
}


def validate_action(obj: Any, *, as_json: bool = False) -> Action:
    """Check a decoded action and return it as a new dict in canonical key order.

    `as_json`: addresses arrive as 0x-hex strings (JSON) rather than bytes (msgpack).
    """
    if not isinstance(obj, dict):
        raise MalformedIntent("bad_type", "action must be a map", "action")
    kind = obj.get("type")
    fields = SCHEMA.get(kind) if isinstance(kind, str) else None
    if fields is None:
        shown = repr(kind[:32]) if isinstance(kind, str) else f"of type {type(kind).__name__}"
        raise MalformedIntent("unknown_action", f"unknown action type {shown}", "type")
    if len(obj) != len(fields) + 1:
        _explain_key_mismatch(obj, fields)
    action: Action = {"type": kind}
    for name, check in fields:
        if name not in obj:
            raise MalformedIntent("missing_field", f"{kind} needs field {name!r}", name)
        action[name] = check(obj[name], name, as_json)
    if kind == "place" and action["kind"] == "market" and action["tif"] not in ("ioc", "fok"):
        raise MalformedIntent("bad_value", "a market order's tif must be ioc or fok", "tif")
    return action


def _explain_key_mismatch(obj: dict[Any, Any], fields: tuple[tuple[str, _Check], ...]) -> None:
    known = {"type", *(name for name, _ in fields)}
    unknown = [key for key in obj if key not in known]
    if unknown:
        raise MalformedIntent("unknown_field", f"unknown field {unknown[0]!r}", str(unknown[0]))
    missing = next(name for name in known if name not in obj)
    raise MalformedIntent("missing_field", f"{obj['type']} needs field {missing!r}", missing)


def place_action(
    market: int,
    side: str,
    price: int,
    size: int,
    *,
    kind: str = "limit",
    tif: str | None = None,
    reduce_only: bool = False,
    cloid: int | None = None,
    expires_ms: int | None = None,
) -> dict[str, Any]:
    """A `place` action (PROTOCOL.md §2) with every key, in canonical order. `tif`
    defaults to gtc for a limit order and ioc for a market order."""
    return {
        "type": "place",
        "market": market,
        "side": side,
        "kind": kind,
        "price": price,
        "size": size,
        "tif": tif or ("gtc" if kind == "limit" else "ioc"),
        "reduce_only": reduce_only,
        "cloid": cloid,
        "expires_ms": expires_ms,
    }


def encode_action(action: Mapping[str, Any]) -> bytes:
    """Canonical msgpack bytes of a validated action (keys in §2 order, smallest ints)."""
    ordered = validate_action(dict(action))
    return _pack(ordered)


def _pack(validated: Action) -> bytes:
    packed: bytes = msgpack.packb(validated, use_bin_type=True)
    return packed


def decode_action(data: bytes) -> Action:
    """Canonical msgpack bytes -> validated action. Refuses a non-canonical encoding."""
    if len(data) > MAX_INTENT_MSGPACK_BYTES:
        raise MalformedIntent("too_large", "action larger than the limit")
    action = validate_action(_unpack(data))
    if _pack(action) != data:
        raise MalformedIntent("not_canonical", "action bytes are not the canonical encoding")
    return action


def _unpack(data: bytes) -> Any:
    limit = len(data)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
        )
    except Exception as error:  # msgpack raises a zoo of types on garbage
        raise MalformedIntent("bad_encoding", f"not valid msgpack: {error}") from None


def action_to_json(action: Action) -> dict[str, Any]:
    return {k: format_address(v) if isinstance(v, bytes) else v for k, v in action.items()}


# ---------------------------------------------------------------------------------------
# EIP-712 (PROTOCOL.md §4)

DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ACTION_TYPE: Final = "Action(bytes32 hash)"
WITHDRAW_TYPE: Final = "Withdraw(address account,uint32 asset,uint64 amount,uint64 nonce)"
APPROVE_AGENT_TYPE: Final = "ApproveAgent(address account,address agent,string name,uint64 nonce)"
REVOKE_AGENT_TYPE: Final = "RevokeAgent(address account,address agent,uint64 nonce)"
_DOMAIN_TYPEHASH: Final = keccak256(DOMAIN_TYPE.encode())
_ACTION_TYPEHASH: Final = keccak256(ACTION_TYPE.encode())
_WITHDRAW_TYPEHASH: Final = keccak256(WITHDRAW_TYPE.encode())
_APPROVE_AGENT_TYPEHASH: Final = keccak256(APPROVE_AGENT_TYPE.encode())
_REVOKE_AGENT_TYPEHASH: Final = keccak256(REVOKE_AGENT_TYPE.encode())


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: bytes) -> bytes:
    return bytes(12) + address


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain; `separator` is computed once."""

    chain_id: int
    verifying_contract: bytes
    name: str = "seqnet"
    version: str = "1"
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.chain_id) is not int or not 0 < self.chain_id < 2**256:
            raise ValueError("chain_id must be a positive integer")
        if len(self.verifying_contract) != 20:
            raise ValueError("verifying_contract must be 20 bytes")
        separator = keccak256(
            _DOMAIN_TYPEHASH
            + keccak256(self.name.encode())
            + keccak256(self.version.encode())
            + _word(self.chain_id)
            + _address_word(self.verifying_contract)
        )
        object.__setattr__(self, "separator", separator)


def action_hash(account: bytes, nonce: int, action: Action) -> bytes:
    """keccak256(msgpack(action) ‖ nonce as 8 bytes big-endian ‖ account): what a trading
    action's EIP-712 struct `Action(bytes32 hash)` carries. `action` must be validated."""
    return keccak256(_pack(action) + nonce.to_bytes(8, "big") + account)


def struct_hash(account: bytes, nonce: int, action: Action) -> bytes:
    """hashStruct of the EIP-712 message for this (validated) action."""
    kind = action["type"]
    if kind == "withdraw":
        return keccak256(
            _WITHDRAW_TYPEHASH
            + _address_word(account)
            + _word(action["asset"])
            + _word(action["amount"])
            + _word(nonce)
        )
    if kind == "approve_agent":
        return keccak256(
            _APPROVE_AGENT_TYPEHASH
            + _address_word(account)
            + _address_word(action["agent"])
            + keccak256(action["name"].encode())
            + _word(nonce)
        )
    if kind == "revoke_agent":
        return keccak256(
            _REVOKE_AGENT_TYPEHASH
            + _address_word(account)
            + _address_word(action["agent"])
            + _word(nonce)
        )
    return keccak256(_ACTION_TYPEHASH + action_hash(account, nonce, action))


def intent_digest(account: bytes, nonce: int, action: Action, domain: Domain) -> bytes:
    """The 32-byte EIP-712 digest a wallet signs; also the intent id (§4).

    `action` must be validated (as returned by `validate_action`/`decode_action`)."""
    return keccak256(b"\x19\x01" + domain.separator + struct_hash(account, nonce, action))


def eip712_message(account: bytes, nonce: int, action: Action, domain: Domain) -> dict[str, Any]:
    """The full EIP-712 typed-data JSON (`eth_signTypedData_v4` input) for this intent.

    For wallets and SDKs; the node never needs it."""
    domain_fields = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]
    kind = action["type"]
    if kind == "withdraw":
        primary = "Withdraw"
        fields = [("account", "address"), ("asset", "uint32"), ("amount", "uint64")]
        values = [format_address(account), action["asset"], action["amount"]]
    elif kind == "approve_agent":
        primary = "ApproveAgent"
        fields = [("account", "address"), ("agent", "address"), ("name", "string")]
        values = [format_address(account), format_address(action["agent"]), action["name"]]
    elif kind == "revoke_agent":
        primary = "RevokeAgent"
        fields = [("account", "address"), ("agent", "address")]
        values = [format_address(account), format_address(action["agent"])]
    if kind in ACCOUNT_ONLY_ACTIONS:
        fields.append(("nonce", "uint64"))
        values.append(nonce)
    else:
        primary = "Action"
        fields = [("hash", "bytes32")]
        values = ["0x" + action_hash(account, nonce, action).hex()]
    type_fields = [{"name": n, "type": t} for n, t in fields]
    message = {n: v for (n, _), v in zip(fields, values, strict=True)}
    return {
        "types": {"EIP712Domain": domain_fields, primary: type_fields},
        "primaryType": primary,
        "domain": {
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": format_address(domain.verifying_contract),
        },
        "message": message,
    }


# ---------------------------------------------------------------------------------------
# Signed intents and entries


@dataclass(frozen=True, slots=True)
class SignedIntent:
    """An intent as a trader sends it. Fields are type-checked; the signature is not."""

    account: bytes
    nonce: int
    action: Action
    signature: bytes  # 65 bytes r ‖ s ‖ v

    def digest(self, domain: Domain) -> bytes:
        return intent_digest(self.account, self.nonce, self.action, domain)


@dataclass(frozen=True, slots=True)
class Entry:
    """A verified intent (PROTOCOL.md §2 entry), plus its id (the EIP-712 digest)."""

    account: bytes
    signer: bytes
    nonce: int
    action: Action
    intent_id: bytes

    def to_dict(self) -> dict[str, Any]:
        """The §2 entry map (msgpack-ready: addresses as bytes)."""
        return {
            "account": self.account,
            "signer": self.signer,
            "nonce": self.nonce,
            "action": self.action,
        }


def make_intent(
    account: bytes, nonce: int, action: Any, signature: bytes, *, validated: bool = False
) -> SignedIntent:
    """Build a SignedIntent from decoded values (addresses as bytes), checking types.

    `validated`: `action` already came out of `validate_action`."""
    if type(account) is not bytes or len(account) != 20:
        raise MalformedIntent("bad_address", "account must be 20 bytes", "account")
    _u64(nonce, "nonce", False)
    if type(signature) is not bytes or len(signature) != 65:
        raise MalformedIntent("bad_signature_length", "signature must be 65 bytes", "signature")
    return SignedIntent(account, nonce, action if validated else validate_action(action), signature)


def sign_intent(
    private_key: bytes | coincurve.PrivateKey,
    account: bytes,
    nonce: int,
    action: Mapping[str, Any],
    domain: Domain,
) -> SignedIntent:
    """Sign an intent (for the SDK, tests and benchmarks). `private_key` may be the
    account's own key or an agent's; v is returned as 27/28, s is always low."""
    key = private_key if isinstance(private_key, coincurve.PrivateKey) else _private(private_key)
    valid = validate_action(dict(action))
    digest = intent_digest(account, nonce, valid, domain)
    raw = key.sign_recoverable(digest, hasher=None)  # r ‖ s ‖ recid, s low (libsecp256k1)
    return make_intent(account, nonce, valid, raw[:64] + bytes([27 + raw[64]]), validated=True)


def recover_signer(digest: bytes, signature: bytes) -> bytes:
    """Address that made the 65-byte `signature` over `digest`; refuses high s."""
    if len(signature) != 65:
        raise BadSignature("bad_signature_length", "signature must be 65 bytes", "signature")
    v = signature[64]
    if v in (27, 28):
        v -= 27
    elif v not in (0, 1):
        raise BadSignature("bad_v", "signature v must be 27, 28, 0 or 1", "signature")
    r, s = signature[0:32], signature[32:64]  # big-endian words compare as numbers
    if not (_ZERO_WORD < r < _N_BYTES and _ZERO_WORD < s < _N_BYTES):
        raise BadSignature("invalid_signature", "signature r or s out of range", "signature")
    if s > _HALF_N_BYTES:
        raise BadSignature("high_s", "signature s must be in the lower half order", "signature")
    parsed = _ffi.new("secp256k1_ecdsa_recoverable_signature *")
    public = _ffi.new("secp256k1_pubkey *")
    if not (
        len(digest) == 32
        and _parse_recoverable(_CTX, parsed, signature[:64], v)
        and _recover(_CTX, public, parsed, digest)
    ):
        raise BadSignature("invalid_signature", "no key recovers from signature")
    out = _ffi.new("unsigned char[65]")
    size = _ffi.new("size_t *", 65)
    _serialize_public(_CTX, out, size, public, _UNCOMPRESSED)
    return _address_of_uncompressed(_ffi.buffer(out, 65)[:])


def verify_intent(
    intent: SignedIntent,
    domain: Domain,
    is_agent: Callable[[bytes, bytes], bool] | None = None,
    digest: bytes | None = None,
) -> Entry:
    """Check the signature and return the verified entry.

    The recovered `signer` is either the account or, for trading actions, possibly an
    agent. Whether it is an approved agent is replicated state: the engine decides when it
    applies the entry. A caller with a view of that state may pass `is_agent(account,
    signer)` to refuse early (see `check_signer`). Withdrawals and agent approvals and
    revocations must be signed by the account itself; that is checked here,
    unconditionally. `digest` may be passed when the caller already computed
    `intent.digest(domain)` (the intent id).
    """
    if digest is None:
        digest = intent.digest(domain)
    signer = recover_signer(digest, intent.signature)
    entry = Entry(intent.account, signer, intent.nonce, intent.action, digest)
    check_signer(entry, is_agent)
    return entry


def check_signer(entry: Entry, is_agent: Callable[[bytes, bytes], bool] | None = None) -> None:
    """Refuse an entry whose recovered signer may not sign it: an account-only action
    signed by another key (`signer_not_account`, always), or, when `is_agent(account,
    signer)` is given, a signer that is neither the account nor an agent it approved
    (`unauthorized_signer`). A node asks this at intake against its latest executed
    state (`Engine.is_authorized`): a bad copy of someone's intent (the same digest with
    a damaged signature recovers some other key) or a forgery then never enters its
    mempool, is never forwarded and is charged to no one."""
    if entry.signer == entry.account:
        return
    kind = entry.action["type"]
    if kind in ACCOUNT_ONLY_ACTIONS:
        raise BadSignature(
            "signer_not_account", f"{kind} must be signed by the account itself", "signature"
        )
    if is_agent is not None and not is_agent(entry.account, entry.signer):
        raise BadSignature(
            "unauthorized_signer",
            f"signer {format_address(entry.signer)} is neither the account nor its agent",
            "signature",
        )


# ---------------------------------------------------------------------------------------
# Wire forms: JSON (HTTP/WebSocket) and msgpack (peers, blocks, high-rate clients)

_INTENT_KEYS: Final = frozenset({"action", "account", "nonce", "signature"})


def _check_intent_keys(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise MalformedIntent("bad_type", "intent must be a map")
    if obj.keys() != _INTENT_KEYS:
        unknown = [k for k in obj if k not in _INTENT_KEYS]
        if unknown:
            raise MalformedIntent("unknown_field", f"unknown field {unknown[0]!r}", str(unknown[0]))
        missing = sorted(_INTENT_KEYS - obj.keys())[0]
        raise MalformedIntent("missing_field", f"intent needs field {missing!r}", missing)


def intent_to_json(intent: SignedIntent) -> dict[str, Any]:
    return {
        "action": action_to_json(intent.action),
        "account": format_address(intent.account),
        "nonce": intent.nonce,
        "signature": "0x" + intent.signature.hex(),
    }


def intent_from_json(obj: Any) -> SignedIntent:
    """An already-parsed JSON object -> SignedIntent (for a batch body, call per item)."""
    _check_intent_keys(obj)
    signature = obj["signature"]
    if not isinstance(signature, str) or len(signature) != 132 or signature[:2] != "0x":
        raise MalformedIntent(
            "bad_signature_length", "signature must be 0x + 130 hex digits", "signature"
        )
    try:
        raw_signature = bytes.fromhex(signature[2:])
    except ValueError:
        raise MalformedIntent("bad_encoding", "signature is not hex", "signature") from None
    account = parse_address(obj["account"], "account")
    action = validate_action(obj["action"], as_json=True)
    return make_intent(account, obj["nonce"], action, raw_signature, validated=True)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedIntent("duplicate_key", "a JSON object repeats a key")
    return result


def _no_floats(text: str) -> Any:
    raise MalformedIntent("bad_type", f"numbers must be integers, got {text}")


MAX_JSON_DEPTH = 32
# A JSON string literal, as the unrolled loop `"[^"\\]*(?:\\.[^"\\]*)*"`: the same language
# as `"(?:[^"\\]|\\.)*"`, about 3× faster in `re` (long runs of plain characters).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def check_json_depth(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` before the parser sees it: CPython's C
    JSON scanner recurses, and a deep enough document overflows the C stack (a crash,
    not an exception) when the recursion limit was raised. Strings are cut out, then
    innermost bracket pairs removed `max_depth` times; anything left is too deep (or
    unbalanced). All steps run at C speed."""
    _check_depth(_JSON_STRING.sub(b"", raw), max_depth)


def _check_depth(stripped: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """`check_json_depth` of a document whose strings are already cut out."""
    skeleton = stripped.translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not skeleton:
            return
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    if b"[]" in skeleton or b"{}" in skeleton:  # a pair inside `max_depth` others
        raise MalformedIntent("too_deep", f"JSON nested deeper than {max_depth} levels")
    depth = deepest = 0
    for byte in skeleton:  # what is left: unbalanced (a parse error) or truly deep
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    if deepest > 0 and skeleton.count(b"[") + skeleton.count(b"{") > max_depth // 2:
        raise MalformedIntent("too_deep", f"JSON nested deeper than {max_depth} levels")


def _members_unless_float(obj: Any) -> int | None:
    """How many object members a parsed document holds, or None if it holds a float."""
    members = 0
    stack = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            members += len(value)
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        elif kind is float:
            return None
    return members


def parse_json_bounded(raw: bytes | str, limit: int) -> Any:
    """JSON text -> object, refusing oversized input, deep nesting, duplicate keys,
    floats and NaN.

    Fast path: orjson parses, and the document is taken if it holds no float and as
    many object members as it has colons outside strings (in valid JSON each member has
    exactly one; a repeated key, which orjson keeps silently, leaves fewer members).
    Anything else goes to the stdlib scanner with refusing hooks, which gives the
    precise error (or, for what orjson alone refuses, such as integers beyond 64 bits
    or a byte-order mark, the same answer as always)."""
    if len(raw) > limit:
        raise MalformedIntent("too_large", f"input larger than {limit} bytes")
    data = raw.encode() if isinstance(raw, str) else raw
    stripped = _JSON_STRING.sub(b"", data)
    _check_depth(stripped)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        if _members_unless_float(obj) == stripped.count(b":"):
            return obj
    try:
        return json.loads(
            raw,
            object_pairs_hook=_no_duplicate_keys,
            parse_float=_no_floats,
            parse_constant=_no_floats,
        )
    except MalformedIntent:
        raise
    except (ValueError, RecursionError) as error:
        raise MalformedIntent("bad_encoding", f"not valid JSON: {error}") from None


def parse_intent_json(raw: bytes | str) -> SignedIntent:
    return intent_from_json(parse_json_bounded(raw, MAX_INTENT_JSON_BYTES))


# The per-intent limits (§4.5) inside a batch: a request may be far larger than one intent,
# so each element's own encoded length is what is measured. An element's encoding is at
# least as long as its compact form (orjson's, or msgpack's smallest) and at most that
# plus everything in the request that is not a compact element or the comma between two:
# only when an element's two bounds straddle the limit are the elements measured one by
# one. That never happens to a request written compactly (orjson, JavaScript's
# JSON.stringify, the SDK, `pack_intent`), whatever its length, nor to one with a little
# whitespace; a pretty-printed batch or a padded intent is scanned (JSON ~13 µs an intent).

# A JSON string literal or one structural character: enough to find where each element
# of an array begins and ends (numbers and literals lie between them).
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')
_QUOTE, _COLON, _COMMA, _OPEN_ARRAY, _OPEN_OBJECT = b'":,[{'


def oversized_json_items(
    raw: bytes | str, items: list[Any], key: str = "intents", limit: int = MAX_INTENT_JSON_BYTES
) -> list[int]:
    """The indexes of `items`, the array under the top-level `key` of the JSON document
    `raw` (already parsed), whose text in `raw` is longer than `limit` bytes."""
    length = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode())
    try:
        compact = [len(orjson.dumps(item)) for item in items]
    except TypeError:  # an integer beyond 64 bits: orjson cannot write it; measure
        compact = None
    if compact is not None and not _straddles(compact, length, limit):
        return [i for i, size in enumerate(compact) if size > limit]
    sizes = json_item_sizes(raw.encode() if isinstance(raw, str) else raw, key)
    if sizes is None or len(sizes) != len(items):
        # Not UTF-8 (the stdlib parser also takes UTF-16 and UTF-32): the compact sizes,
        # lower bounds, are all there is.
        sizes = compact or []
    return [i for i, size in enumerate(sizes) if size > limit]


def _straddles(compact: list[int], length: int, limit: int) -> bool:
    excess = length - sum(compact) - max(0, len(compact) - 1)
    return any(size <= limit < size + excess for size in compact)


def json_item_sizes(data: bytes, key: str) -> list[int] | None:
    """The length in bytes of each element of the array under the top-level `key` of the
    JSON object `data` (valid JSON: it has been parsed), the whitespace around an element
    not counted; None if there is no such array."""
    depth = 0
    expect_key = matched = value_next = inside = False
    sizes: list[int] | None = None
    start = 0
    for token in _JSON_TOKEN.finditer(data):
        char = data[token.start()]
        after_key, value_next = value_next, False
        if char == _QUOTE:
            if depth == 1 and expect_key:
                matched = json.loads(token.group()) == key
            expect_key = False
        elif char == _COLON:
            value_next = depth == 1 and matched
        elif char == _COMMA:
            expect_key = depth == 1
            if inside and depth == 2:
                assert sizes is not None
                sizes.append(len(data[start : token.start()].strip()))
                start = token.end()
        elif char in (_OPEN_ARRAY, _OPEN_OBJECT):
            if after_key and char == _OPEN_ARRAY:
                inside, sizes, start = True, [], token.end()
            depth += 1
            expect_key = depth == 1
        else:  # a closing bracket
            depth -= 1
            if inside and depth == 1:
                assert sizes is not None
                last = len(data[start : token.start()].strip())
                if last or sizes:  # "[]" holds no element
                    sizes.append(last)
                inside = False
    return sizes


def oversized_msgpack_items(
    data: bytes, items: list[Any], key: str = "intents", limit: int = MAX_INTENT_MSGPACK_BYTES
) -> list[int]:
    """`oversized_json_items` for a msgpack map `data` (already unpacked). An element
    that is the packed bytes of one intent is left to `unpack_intent`, which measures
    those bytes themselves."""
    try:
        compact = [len(msgpack.packb(item, use_bin_type=True)) for item in items]
    except (ValueError, TypeError, OverflowError):  # nested beyond the packer's limit
        compact = None
    if compact is None or _straddles(compact, len(data) + len(items), limit):  # no commas
        sizes = msgpack_item_sizes(data, key)
        if sizes is not None and len(sizes) == len(items):
            compact = sizes
    if compact is None:
        return []
    return [i for i, size in enumerate(compact) if size > limit and not isinstance(items[i], bytes)]


def msgpack_item_sizes(data: bytes, key: str) -> list[int] | None:
    """The length in bytes of each element of the array under the top-level `key` of the
    msgpack map `data` (valid: it has been unpacked); None if there is no such array."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    sizes: list[int] | None = None
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() != key:
                unpacker.skip()
                continue
            try:
                count = unpacker.read_array_header()
            except msgpack.UnpackValueError:  # not an array
                unpacker.skip()
                continue
            sizes = []
            for _ in range(count):
                start = unpacker.tell()
                unpacker.skip()
                sizes.append(unpacker.tell() - start)
    except Exception:  # msgpack raises a zoo of types; `data` was unpacked once already
        return None
    return sizes


def intent_to_wire(intent: SignedIntent) -> dict[str, Any]:
    """msgpack-ready map (addresses and signature as bytes), for embedding in frames."""
    return {
        "action": intent.action,
        "account": intent.account,
        "nonce": intent.nonce,
        "signature": intent.signature,
    }


def intent_from_wire(obj: Any) -> SignedIntent:
    """The inverse of `intent_to_wire`, from an already-unpacked msgpack object."""
    _check_intent_keys(obj)
    return make_intent(obj["account"], obj["nonce"], obj["action"], obj["signature"])


def pack_intent(intent: SignedIntent) -> bytes:
    packed: bytes = msgpack.packb(intent_to_wire(intent), use_bin_type=True)
    return packed


def unpack_intent(raw: bytes) -> SignedIntent:
    if len(raw) > MAX_INTENT_MSGPACK_BYTES:
        raise MalformedIntent("too_large", f"intent larger than {MAX_INTENT_MSGPACK_BYTES} bytes")
    return intent_from_wire(_unpack(raw))


# ---------------------------------------------------------------------------------------
# Micro-benchmark (reused by `seqnet bench cluster` for its signature limit)


def verify_rate(n: int = 2000) -> float:
    """secp256k1 recoveries to an address per second on this core (recover + keccak)."""
    key = _private(bytes(31) + b"\x01")
    digest = keccak256(b"seqnet verify_rate")
    raw = key.sign_recoverable(digest, hasher=None)
    signature = raw[:64] + bytes([27 + raw[64]])
    expected = address_of_private_key(key)
    start = time.perf_counter()
    for _ in range(n):
        signer = recover_signer(digest, signature)
    elapsed = time.perf_counter() - start
    assert signer == expected
    return n / elapsed


def committed_intent(packed: bytes) -> SignedIntent:
    """A packed intent from a committed block: 2f + 1 voters decoded and validated it
    before the QC, so only the action's keys are put in canonical order (what
    `validate_action` returns for a valid action), without checking every value again:
    replay and catch-up spend a third less per entry. Anything unexpected takes the full
    path (`unpack_intent`), which gives the same result or a clear error."""
    try:
        obj = msgpack.unpackb(packed, raw=False)
        action = obj["action"]
        fields = SCHEMA[action["type"]]
        if len(action) == len(fields) + 1 and len(obj) == 4:
            canonical: Action = {"type": action["type"]}
            for name, _ in fields:
                canonical[name] = action[name]
            return SignedIntent(obj["account"], obj["nonce"], canonical, obj["signature"])
    except (KeyError, TypeError, ValueError, msgpack.UnpackException):
        pass
    return unpack_intent(packed)


# Trading actions are hashed through `action_hash`; the other kinds have typed structs.
_TYPED_KINDS: Final = frozenset(("withdraw", "approve_agent", "revoke_agent"))
_keccak: Final = sha3.keccak_256


def committed_action(packed: bytes, domain: Domain) -> tuple[bytes, int, Action, bytes]:
    """(account, nonce, action, intent id) of a packed intent from a committed block:
    `committed_intent` and `SignedIntent.digest` in one step, for catch-up and replay,
    where they are most of the cost of an entry. A trading action (the usual entry) is
    decoded by a typed msgspec decoder (`_CommittedIntentWire`: one struct per trading
    kind, its fields in canonical order, every value checked in C), so the canonical
    action is the struct written back (its tag first, then its fields in declaration
    order), and it is hashed inline (the same bytes as `intent_digest`:
    tests/node/test_intents.py compares them). It takes only what
    `_committed_action_general` takes on its own fast path, with plain values (ints,
    strings, booleans, nil), and gives the same result; anything else takes that general
    path, which gives the same result or the same error.

    The action's dict and its canonical bytes both come from the struct in C
    (`_action_dict`, `_encode_canonical`): for plain values msgspec writes the bytes
    msgpack's packer writes for the same dict (the smallest form of each value;
    tests/node/test_committed_action.py compares them), so nothing is packed in Python."""
    try:
        wire = _decode_committed_intent(packed)
    except msgspec.DecodeError:
        return _committed_action_general(packed, domain)
    action = wire.action
    account, nonce = wire.account, wire.nonce
    inner = _keccak(_encode_canonical(action) + nonce.to_bytes(8, "big") + account).digest()
    struct = _keccak(_ACTION_TYPEHASH + inner).digest()
    digest = _keccak(b"\x19\x01" + domain.separator + struct).digest()
    return account, nonce, _action_dict(action), digest


# What both msgpack and msgspec decode to the same Python value (not ext, not a float's
# width, not a map or an array): the only values the msgspec path passes on. Bytes would
# be too, but no trading field holds bytes, and msgspec takes one string-like type only.
_PlainValue: Final = int | str | bool | None


def _trading_struct(kind: str, names: tuple[str, ...]) -> type[msgspec.Struct]:
    """A trading action of `kind` as msgspec reads it: a map with exactly these keys
    (in any order; a repeated key keeps its last value, as msgpack's dict does) and
    "type" equal to `kind` (a repeated "type" is refused: the general path decides)."""
    return msgspec.defstruct(
        f"_Committed_{kind}",
        [(name, _PlainValue) for name in names],
        tag_field="type",
        tag=kind,
        forbid_unknown_fields=True,
    )


_TRADING_STRUCTS: Final = tuple(
    _trading_struct(kind, tuple(name for name, _ in fields))
    for kind, fields in SCHEMA.items()
    if kind not in _TYPED_KINDS
)


# The wire form of a signed intent (`intent_to_wire`) with the types the fast path of
# `_committed_action_general` requires, and a trading action (one of `_TRADING_STRUCTS`).
_CommittedIntentWire: Final = msgspec.defstruct(
    "_CommittedIntentWire",
    [
        ("action", Union[_TRADING_STRUCTS]),  # noqa: UP007 (a union built from a tuple)
        ("account", Annotated[bytes, msgspec.Meta(min_length=20, max_length=20)]),
        ("nonce", Annotated[int, msgspec.Meta(ge=0)]),  # msgpack ints are < 2**64
        ("signature", bytes),
    ],
    forbid_unknown_fields=True,
)
_decode_committed_intent: Final[Callable[[bytes], Any]] = msgspec.msgpack.Decoder(
    _CommittedIntentWire
).decode
# A trading struct as its canonical action dict ({"type": kind, then the fields in
# declaration order}: plain values come back as they are) and as that dict's msgpack
# bytes. One encoder: its `encode` runs in C without Python callbacks for these values.
_action_dict: Final[Callable[[Any], Action]] = msgspec.to_builtins
_encode_canonical: Final[Callable[[Any], bytes]] = msgspec.msgpack.Encoder().encode


def _committed_action_general(packed: bytes, domain: Domain) -> tuple[bytes, int, Action, bytes]:
    """`committed_action` for whatever its msgspec path does not take, with msgpack: a
    trading action is unpacked and hashed inline; anything else takes `committed_intent`
    and `SignedIntent.digest`."""
    try:
        obj = msgpack.unpackb(packed, raw=False)
        action = obj["action"]
        kind = action["type"]
        fields = SCHEMA[kind]
        if len(action) == len(fields) + 1 and len(obj) == 4 and kind not in _TYPED_KINDS:
            canonical: Action = {"type": kind}
            for name, _ in fields:
                canonical[name] = action[name]
            account = obj["account"]
            nonce = obj["nonce"]
            if type(account) is bytes and len(account) == 20 and type(nonce) is int:
                body = msgpack.packb(canonical, use_bin_type=True)
                inner = _keccak(body + nonce.to_bytes(8, "big") + account).digest()
                struct = _keccak(_ACTION_TYPEHASH + inner).digest()
                digest = _keccak(b"\x19\x01" + domain.separator + struct).digest()
                return account, nonce, canonical, digest
    except (KeyError, TypeError, ValueError, OverflowError, msgpack.UnpackException):
        pass
    si = committed_intent(packed)
    return si.account, si.nonce, si.action, si.digest(domain)
