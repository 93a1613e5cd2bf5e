"""Encrypted intents at the API (docs/PROTOCOL.md §10, docs/API.md): the committee key
and the intake of sealed envelopes.

- `GET /v1/fairness/key`: the committee key (hex of its §10.1 bytes, key_id, t, n,
  epoch) with its `status`: "ready", or "pending" while the members' DKG (genesis
  [dkg], §10.9) has made none yet (then the key fields are null and encrypted intents
  are refused `no_committee_key`); with a DKG also the height it became current, the
  qualified dealers and every member's verification key. 404 `no_committee_key` when
  the committee has no key and makes none.
- `POST /v1/intents/encrypted`: `{"envelope": "0x…"}` or `{"envelopes": ["0x…", …]}`
  (at most `max_batch_intents`), with the same `wait`/`timeout_ms` query as
  /v1/intents. Each envelope is decoded strictly here (`decode_envelope`: sizes,
  version, bucket, chain id 0); the node then checks the signature, the KEM proof, the
  signer's authority, the epoch and the nonce from the header alone
  (node/runtime/intake.py). One result per envelope, `id` the envelope's id.

Rate limits see only the header: the client's IP is charged one order per envelope
(a sealed cancel cannot be told from an order) and the header's account is charged for
envelopes the node admitted, as for plain intents (node/api/intake.py).
"""

from __future__ import annotations

from typing import Any, Final, Literal, Protocol, runtime_checkable

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from node.api.facade import ApiLimits, SubmitResult
from node.api.intake import (
    ApiError,
    Intake,
    PostHelpers,
    client_key,
    from_intent_error,
    wait_and_timeout,
)
from node.api.schema import SubmitResponse, error_responses
from node.fairness.envelope import MAX_ENVELOPE_BYTES, Envelope, decode_envelope
from node.fairness.errors import FairnessError
from node.intents import IntentError, parse_json_bounded

ENCRYPTED_PATH: Final = "/v1/intents/encrypted"
KEY_PATH: Final = "/v1/fairness/key"
_MAX_HEX_CHARS: Final = 2 + 2 * MAX_ENVELOPE_BYTES


@runtime_checkable
class EncryptedFacade(Protocol):
    """What a node offers for encrypted intents (node/runtime/member.py)."""

    def fairness_key(self) -> dict[str, Any] | None: ...

    async def submit_encrypted(
        self, envelopes: list[bytes], wait: bool, timeout_s: float
    ) -> list[SubmitResult]: ...


EnvelopeItem = Envelope | FairnessError


class FairnessKeyResponse(BaseModel):
    """GET /v1/fairness/key."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["pending", "ready"] = Field(
        description="pending: the members' DKG (PROTOCOL.md §10.9) has made no key yet"
    )
    committee_key: str | None = Field(
        description="0x-hex of the committee key (PROTOCOL.md §10.1); null while pending"
    )
    key_id: str | None = Field(description="0x-hex, 32 bytes: the key's id; null while pending")
    epoch: int | None = Field(description="the key's epoch (pending: the running DKG's)")
    t: int = Field(description="decryption shares needed (f + 1)")
    n: int = Field(description="members")
    height: int | None = Field(None, description="DKG: committed height the key is current after")
    qualified: list[int] | None = Field(None, description="DKG: the dealers of the key (1-based)")
    verification_keys: list[str] | None = Field(
        None, description="DKG: each member's verification key Xᵢ (0x-hex, 33 bytes)"
    )
    pending_epoch: int | None = Field(None, description="DKG: a re-key run in progress")
    grace_epoch: int | None = Field(
        None,
        description="DKG: the key this one replaced, while envelopes sealed to it still open "
        "(PROTOCOL.md §10.9, grace_blocks); null outside a grace",
    )
    grace_until_height: int | None = Field(
        None, description="DKG: the last block height in which grace_epoch's envelopes open"
    )


def decode_envelope_body(raw: bytes, limits: ApiLimits) -> list[EnvelopeItem]:
    """The body of POST /v1/intents/encrypted: each envelope decoded, or why not (a
    batch answers each bad envelope on its own; a lone bad one refuses the request)."""
    try:
        obj = parse_json_bounded(raw, limits.max_body_bytes)
    except IntentError as error:
        raise from_intent_error(error) from None
    if not isinstance(obj, dict) or len(obj) != 1 or not {"envelope", "envelopes"} & set(obj):
        raise ApiError(400, "bad_type", 'the body is {"envelope": hex} or {"envelopes": [hex…]}')
    if "envelope" in obj:
        item = _decode_one(obj["envelope"])
        if isinstance(item, FairnessError):
            status = 413 if item.code == "too_large" else 400
            raise ApiError(status, item.code, item.message, field="envelope")
        return [item]
    items = obj["envelopes"]
    if not isinstance(items, list) or not items:
        raise ApiError(400, "bad_type", "envelopes must be a non-empty array", field="envelopes")
    if len(items) > limits.max_batch_intents:
        message = f"{len(items)} envelopes in one request; at most {limits.max_batch_intents}"
        raise ApiError(413, "too_large", message, field="envelopes")
    return [_decode_one(item) for item in items]


def _decode_one(value: Any) -> EnvelopeItem:
    if not isinstance(value, str) or not value.startswith("0x"):
        return FairnessError("bad_type", "an envelope is 0x-prefixed hex")
    if len(value) > _MAX_HEX_CHARS:
        return FairnessError("too_large", f"an envelope is at most {MAX_ENVELOPE_BYTES} bytes")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        return FairnessError("bad_type", "an envelope is 0x-prefixed hex")
    try:
        return decode_envelope(data)
    except FairnessError as error:
        return error


async def submit_envelopes(
    intake: Intake,
    facade: EncryptedFacade,
    client: Any,
    items: list[EnvelopeItem],
    wait: bool,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """Per-envelope answers, in order: charged as orders to the IP, then by header
    account like plain intents (only what the node admitted costs the account)."""
    envelopes = [item for item in items if isinstance(item, Envelope)]
    admitted, limited = intake.check_envelopes(client, envelopes)
    results: list[SubmitResult] = []
    if admitted:
        try:
            results = await facade.submit_encrypted([e.raw for e in admitted], wait, timeout_s)
        except Exception:
            raise ApiError(500, "internal", "the node failed to take the envelopes") from None
    intake.charge_envelopes(admitted, results)
    by_envelope = dict(zip(map(id, admitted), results, strict=True))
    answers: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, FairnessError):
            answers.append(
                {"id": None, "status": "rejected", "code": item.code, "message": item.message}
            )
        elif id(item) in limited:
            answers.append(
                {
                    "id": None,
                    "status": "rejected",
                    "code": "rate_limited",
                    "message": "envelopes from this account over the rate limit",
                    "retry_after_ms": max(1, int(limited[id(item)] * 1000)),
                }
            )
        else:
            r = by_envelope[id(item)]
            answer: dict[str, Any] = {"id": r.intent_id, "status": r.status}
            for name in ("code", "message", "height"):
                if getattr(r, name) is not None:
                    answer[name] = getattr(r, name)
            answers.append(answer)
    return answers


def install_fairness_routes(
    app: FastAPI, facade: object, intake: Intake, limits: ApiLimits, helpers: PostHelpers
) -> None:
    """The two routes, on the API's own helpers (node/api/app.py). A facade that is no
    `EncryptedFacade` (or a genesis without a key) answers 404 `no_committee_key`."""
    encrypted = facade if isinstance(facade, EncryptedFacade) else None
    no_key = ApiError(404, "no_committee_key", "this committee takes no encrypted intents")

    @app.get(
        KEY_PATH,
        response_model=FairnessKeyResponse,
        responses=error_responses(404, 429),
        summary="The committee key for encrypted intents (PROTOCOL.md §10.1)",
    )
    async def fairness_key(request: Request) -> Response:
        try:
            intake.charge_request(client_key(request.scope))
        except ApiError as exc:
            return helpers.error(exc)
        key = None if encrypted is None else encrypted.fairness_key()
        return helpers.error(no_key) if key is None else helpers.json(200, key)

    @app.post(
        ENCRYPTED_PATH,
        response_model=SubmitResponse,
        responses=error_responses(400, 404, 408, 413, 415, 429, 500),
        summary="Submit encrypted intents (PROTOCOL.md §10.3)",
    )
    async def submit_encrypted(
        request: Request,
        wait: Literal["committed"] | None = Query(None, description="wait until committed"),
        timeout_ms: int | None = Query(None, ge=1, le=limits.max_wait_timeout_ms),
    ) -> Response:
        """One result per envelope, in order. A batch with rejected envelopes is still 200."""
        try:
            client = client_key(request.scope)
            intake.charge_request(client)
            key = None if encrypted is None else encrypted.fairness_key()
            if encrypted is None or key is None or key["status"] != "ready":
                raise no_key
            helpers.check_content_type(request)
            wait_committed, timeout_s = wait_and_timeout(wait, timeout_ms, limits)
            items = decode_envelope_body(await helpers.read_body(request, limits), limits)
            results = await submit_envelopes(
                intake, encrypted, client, items, wait_committed, timeout_s
            )
            helpers.add_result_ids(results)
            return helpers.json(200, {"results": results})
        except ApiError as exc:
            return helpers.error(exc)
