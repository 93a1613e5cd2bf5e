"""Read-only queries a node answers from its own replica: accounts, checkpoints, proofs.

What a trader needs to follow their funds and to claim on chain: balances and open
orders, the checkpoints (roots, signatures, settlement transaction), and Merkle proofs of
a withdrawal or a balance against a checkpoint's roots, in exactly the form the
settlement contract takes (docs/SETTLEMENT.md). Bytes travel as 0x-hex.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import structlog
from fastapi import FastAPI, Path, Request
from fastapi.responses import Response

from node.api_intake import ApiError
from node.intents import IntentError, parse_address

log = structlog.get_logger("seqnet.api")


# FastAPI binds a parameter's name into its Path object: build a fresh one per parameter.
def _address() -> Any:
    return Path(description="0x-prefixed 20-byte address", pattern="^0x[0-9a-fA-F]{40}$")


def _u64() -> Any:
    return Path(ge=0, le=2**64 - 1)


@runtime_checkable
class QueryFacade(Protocol):
    def account(self, address: bytes) -> dict[str, Any]: ...
    def checkpoints(self) -> list[dict[str, Any]]: ...
    def withdrawal_proof(self, sequence: int, withdrawal_id: int) -> dict[str, Any] | None: ...
    def balance_proof(self, address: bytes, asset_id: int) -> dict[str, Any] | None: ...


def install_query_routes(
    app: FastAPI,
    facade: QueryFacade,
    charge: Any,
    reply: Any,
    error: Any,
) -> None:
    """Mount the query routes; `charge(request)` rate-limits, `reply(status, body)` and
    `error(ApiError)` build responses the way the rest of the API does."""

    def answer(request: Request, handler: Callable[[], Any]) -> Response:
        try:
            charge(request)
            response: Response = reply(200, handler())
        except ApiError as exc:
            response = error(exc)
        except IntentError as exc:
            response = error(ApiError(400, exc.code, exc.message))
        return response

    @app.get("/v1/accounts/{address}", summary="Balances and open orders of an account")
    async def account(request: Request, address: str = _address()) -> Response:
        return answer(request, lambda: facade.account(parse_address(address)))

    @app.get("/v1/checkpoints", summary="Recent checkpoints: roots, signatures, settlement tx")
    async def checkpoints(request: Request) -> Response:
        return answer(request, lambda: {"checkpoints": facade.checkpoints()})

    @app.get(
        "/v1/proofs/withdrawal/{sequence}/{withdrawal_id}",
        summary="Merkle proof of a withdrawal against a checkpoint's withdrawals root",
    )
    async def withdrawal_proof(
        request: Request, sequence: int = _u64(), withdrawal_id: int = _u64()
    ) -> Response:
        def handler() -> dict[str, Any]:
            proof = facade.withdrawal_proof(sequence, withdrawal_id)
            if proof is None:
                raise ApiError(404, "not_found", "no such withdrawal in a kept checkpoint")
            return proof

        return answer(request, handler)

    @app.get(
        "/v1/proofs/balance/{address}/{asset_id}",
        summary="Merkle proof of a balance against the last checkpoint's state root",
    )
    async def balance_proof(
        request: Request, address: str = _address(), asset_id: int = _u64()
    ) -> Response:
        def handler() -> dict[str, Any]:
            proof = facade.balance_proof(parse_address(address), asset_id)
            if proof is None:
                raise ApiError(404, "not_found", "no balance leaf for that account and asset")
            return proof

        return answer(request, handler)
