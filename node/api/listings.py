"""POST /v1/admin/listings: a signed listing of an option series, from anyone
(docs/API.md, "Listings"; the format is docs/PROTOCOL.md §7.5, node/listing.py).

No other authentication: the listing carries the signatures of the oracle quorum of
members, and the member checks them exactly as a voter will (a listing without them is
refused here, with a code, rather than proposed and voted down). Taken, the listing is
forwarded to the other members and waits in their pools until a leader proposes it; the
engine lists the series or rejects it at that block (GET /v1/options shows it once
listed).

It may not touch: the engine, consensus, I/O (the facade does the rest).
"""

from __future__ import annotations

from typing import Final, Literal, Protocol, runtime_checkable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from node.api.facade import ApiLimits
from node.api.intake import ApiError, Intake, PostHelpers, client_key
from node.api.schema import error_responses
from node.intents import IntentError, parse_json_bounded
from node.listing import MAX_LISTING_BYTES, BadListing, Listing, make_listing

LISTINGS_PATH: Final = "/v1/admin/listings"
# A JSON listing: the terms (< 400 bytes) and per member ~150 bytes of hex and keys.
MAX_LISTING_BODY_BYTES: Final = 4 * MAX_LISTING_BYTES
# Codes of a refused listing and their HTTP statuses (docs/API.md).
_STATUS: Final = {
    "malformed_listing": 400,
    "listing_too_large": 413,
    "listing_quorum": 400,
    "bad_listing_signature": 400,
    "market_taken": 409,
    "listings_full": 503,
}


@runtime_checkable
class ListingFacade(Protocol):
    """What a member offers for listings (node/runtime/member.py)."""

    def submit_listing(self, entry: bytes) -> bool: ...


class ListingTerms(BaseModel):
    """The series' terms: an option market's genesis table without `kind` and `quote`
    (the quote is the perp collateral)."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=0, le=2**32 - 1)
    symbol: str = Field(min_length=1, max_length=32)
    underlying: int = Field(ge=0, le=2**32 - 1, description="a perp market's id")
    strike: int = Field(ge=1, le=2**64 - 1)
    expiry_ms: int = Field(ge=1, le=2**64 - 1)
    right: Literal["call", "put"]
    underlying_lots: int = Field(ge=1)
    vol_e9: int = Field(ge=1, description="the committee vol until members publish one")
    tick_size: int = Field(ge=1)
    lot_size: int = Field(ge=1)
    maker_fee_bps: int = Field(ge=0, le=1000)
    taker_fee_bps: int = Field(ge=0, le=1000)


class ListingSignature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: int = Field(ge=0, le=255, description="the member's index in genesis")
    signature: str = Field(description="0x + 128 hex digits: Ed25519 over PROTOCOL.md §7.5")


class ListingRequest(BaseModel):
    """POST /v1/admin/listings."""

    model_config = ConfigDict(extra="forbid")
    terms: ListingTerms
    signatures: list[ListingSignature]


class ListingResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted", "pending"] = Field(
        description="accepted: taken now; pending: the same terms were taken already"
    )
    market: int


def decode_listing_body(raw: bytes) -> Listing:
    """The listing of a request body; ApiError (400/413 with the listing's code). Its
    signatures are the facade's to check (it knows the members' keys)."""
    try:
        obj = parse_json_bounded(raw, MAX_LISTING_BODY_BYTES)
    except IntentError as error:
        code = "listing_too_large" if error.code == "too_large" else "malformed_listing"
        raise _refused(BadListing(code, error.message)) from None
    if not isinstance(obj, dict) or set(obj) != {"terms", "signatures"}:
        raise _refused(BadListing("malformed_listing", "the body is {terms, signatures}"))
    signatures = obj["signatures"]
    if not isinstance(signatures, list) or not all(
        isinstance(s, dict) and set(s) == {"member", "signature"} for s in signatures
    ):
        raise _refused(BadListing("malformed_listing", "signatures are [{member, signature}, ...]"))
    pairs: list[tuple[int, bytes]] = []
    for s in signatures:
        member, signature = s["member"], s["signature"]
        if type(member) is not int or not isinstance(signature, str):
            raise _refused(BadListing("malformed_listing", "member: an integer, signature: hex"))
        try:
            if signature[:2] not in ("0x", "0X") or len(signature) != 130:
                raise ValueError
            pairs.append((member, bytes.fromhex(signature[2:])))
        except ValueError:
            raise _refused(
                BadListing("malformed_listing", "a signature is 0x + 128 hex digits")
            ) from None
    try:
        return make_listing(obj["terms"], pairs)
    except BadListing as error:
        raise _refused(error) from None


def _refused(error: BadListing) -> ApiError:
    return ApiError(_STATUS.get(error.code, 400), error.code, str(error))


def install_listing_routes(
    app: FastAPI, facade: object, intake: Intake, limits: ApiLimits, helpers: PostHelpers
) -> None:
    """The route, on the API's own helpers (node/api/app.py). A facade that is no
    `ListingFacade` answers 404 `no_listings`."""
    members = facade if isinstance(facade, ListingFacade) else None
    body_limits = ApiLimits(max_body_bytes=MAX_LISTING_BODY_BYTES)

    @app.post(
        LISTINGS_PATH,
        response_model=ListingResponse,
        responses=error_responses(400, 404, 408, 409, 413, 415, 429, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ListingRequest.model_json_schema()}},
            }
        },
        summary="Submit an option series listing signed by the members (PROTOCOL.md §7.5)",
    )
    async def submit_listing(request: Request) -> Response:
        try:
            intake.charge_request(client_key(request.scope))
            if members is None:
                raise ApiError(404, "no_listings", "this node takes no listings")
            helpers.check_content_type(request)
            listing = decode_listing_body(await helpers.read_body(request, body_limits))
            try:
                new = members.submit_listing(listing.entry())
            except BadListing as exc:
                raise _refused(exc) from None
            status = "accepted" if new else "pending"
            return helpers.json(200, {"status": status, "market": listing.series_id})
        except ApiError as exc:
            return helpers.error(exc)
