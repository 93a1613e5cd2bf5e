"""The client API's documented shapes, for the generated OpenAPI document.

Request bodies are parsed by the protocol's own code (node/intents.py), not by pydantic,
so the intent schema here is documentation that must agree with it: it is built from
`intents.SCHEMA` (the §2 field lists), and a test checks every field has a schema and
that the published vectors validate. Responses are pydantic models, used only to
document what the handlers write with orjson.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from node.intents import MAX_AGENT_NAME_BYTES, SCHEMA, U32_MAX, U64_MAX

_U32: Final = {"type": "integer", "minimum": 0, "maximum": U32_MAX}
_U64: Final = {"type": "integer", "minimum": 0, "maximum": U64_MAX}
_ADDRESS: Final = {"type": "string", "pattern": "^0[xX][0-9a-fA-F]{40}$"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


FIELD_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "market": _U32,
    "asset": _U32,
    "side": {"enum": ["buy", "sell"]},
    "kind": {"enum": ["limit", "market"]},
    "price": _U64,
    "size": _U64,
    "tif": {"enum": ["gtc", "ioc", "fok", "post"]},
    "reduce_only": {"type": "boolean"},
    "cloid": _U64,
    "expires_ms": _U64,
    "oid": _U64,
    "amount": _U64,
    "agent": _ADDRESS,
    "name": {"type": "string", "maxLength": MAX_AGENT_NAME_BYTES},
    "leverage": _U32,
    "isolated": {"type": "boolean"},
    "mode": {"enum": ["portfolio", "standard"]},
}
# Fields that may be null, per action type (PROTOCOL.md §2: "u64 or nil", "u32 or nil").
NULLABLE: Final = {("place", "cloid"), ("place", "expires_ms"), ("cancel_all", "market")}


def action_schema(kind: str) -> dict[str, Any]:
    names = [name for name, _ in SCHEMA[kind]]
    properties: dict[str, Any] = {"type": {"const": kind}}
    for name in names:
        schema = FIELD_SCHEMAS[name]
        properties[name] = _nullable(schema) if (kind, name) in NULLABLE else schema
    return {
        "title": f"Action_{kind}",
        "type": "object",
        "properties": properties,
        "required": ["type", *names],
        "additionalProperties": False,
    }


def intent_schema() -> dict[str, Any]:
    return {
        "title": "SignedIntent",
        "description": "PROTOCOL.md §4.5 JSON wire form; the id is the EIP-712 digest.",
        "type": "object",
        "properties": {
            "action": {"oneOf": [action_schema(kind) for kind in SCHEMA]},
            "account": _ADDRESS,
            "nonce": _U64,
            "signature": {"type": "string", "pattern": "^0x[0-9a-fA-F]{130}$"},
        },
        "required": ["action", "account", "nonce", "signature"],
        "additionalProperties": False,
    }


def submit_body_schema(max_batch_intents: int) -> dict[str, Any]:
    batch = {
        "title": "IntentBatch",
        "type": "object",
        "properties": {
            "intents": {
                "type": "array",
                "items": intent_schema(),
                "minItems": 1,
                "maxItems": max_batch_intents,
            }
        },
        "required": ["intents"],
        "additionalProperties": False,
    }
    return {"oneOf": [intent_schema(), batch]}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    code: str
    message: str
    field: str | None = None
    retry_after_ms: int | None = None


class ErrorResponse(_Model):
    error: ErrorDetail


class IntentResult(_Model):
    id: str | None  # 0x-hex intent id; null when the intent could not be decoded
    status: Literal["accepted", "committed", "rejected", "timeout"]
    code: str | None = None
    message: str | None = None
    field: str | None = None
    height: int | None = None
    retry_after_ms: int | None = None
    oid: int | None = None  # HTTP: the order a committed `place` created
    withdrawal_id: int | None = None  # HTTP: the withdrawal a committed `withdraw` created


class DomainResponse(_Model):
    name: str
    version: str
    chain_id: int
    verifying_contract: str


class SubmitResponse(_Model):
    results: list[IntentResult]


class HealthResponse(_Model):
    status: Literal["ok"]


class ReadyResponse(_Model):
    ready: bool


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}
