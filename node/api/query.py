"""Read-only queries a node answers from its own replica.

What a trader needs to follow their funds and to claim on chain: balances and open
orders, the checkpoints (roots, signatures, settlement transaction), and Merkle proofs of
a withdrawal or a balance against a checkpoint's roots, in exactly the form the
settlement contract takes (docs/SETTLEMENT.md). With an indexer (node/api/indexer.py) also
the exchange itself: markets and assets, book depth with the height it reflects, recent
trades, an account's order history and fills, one order by id or client id.
Bytes travel as 0x-hex; every answer is read on the event loop, so it is the state at
one height.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import structlog
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from node.api.intake import ApiError
from node.api.schema import error_responses
from node.intents import ZERO_ADDRESS, IntentError, parse_address

if TYPE_CHECKING:
    from node.api.indexer import Indexer

log = structlog.get_logger("seqnet.api")


def _found(value: dict[str, Any] | None, missing: str) -> dict[str, Any]:
    """The value, or a 404 saying what was not found."""
    if value is None:
        raise ApiError(404, "not_found", missing)
    return value


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

    answer = _answerer(charge, reply, error)

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
        return answer(
            request,
            lambda: _found(
                facade.withdrawal_proof(sequence, withdrawal_id),
                "no such withdrawal in a kept checkpoint",
            ),
        )

    @app.get(
        "/v1/proofs/balance/{address}/{asset_id}",
        summary="Merkle proof of a balance against the last checkpoint's state root",
    )
    async def balance_proof(
        request: Request, address: str = _address(), asset_id: int = _u64()
    ) -> Response:
        return answer(
            request,
            lambda: _found(
                facade.balance_proof(parse_address(address), asset_id),
                "no balance leaf for that account and asset",
            ),
        )


def _answerer(
    charge: Any, reply: Any, error: Any
) -> Callable[[Request, Callable[[], Any]], Response]:
    def answer(request: Request, handler: Callable[[], Any]) -> Response:
        try:
            charge(request)
            response: Response = reply(200, handler())
        except ApiError as exc:
            response = error(exc)
        except IntentError as exc:
            response = error(ApiError(400, exc.code, exc.message))
        return response

    return answer


# ---------------------------------------------------------------------------------------
# Markets, books, trades, orders (from the indexer)

# On-chain decimals by symbol, for tokens whose genesis entry does not say (genesis fixes
# only the engine unit). ETH (the zero token) always has 18. Unknown: null, and clients
# then work in engine units.
KNOWN_DECIMALS: Final = {"ETH": 18, "WETH": 18, "USDC": 6, "USDT": 6, "BTC": 8, "WBTC": 8}
DEFAULT_DEPTH: Final = 50
MAX_DEPTH: Final = 1000
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500


class AssetView(BaseModel):
    id: int
    symbol: str
    token: str
    unit: int  # token base units per engine unit
    decimals: int | None  # on-chain decimals of the token, when known


class MarketView(BaseModel):
    id: int
    symbol: str
    base: int
    quote: int
    lot_size: int
    tick_size: int
    maker_fee_bps: int
    taker_fee_bps: int


class MarketsResponse(BaseModel):
    assets: list[AssetView]
    markets: list[MarketView]


class BookResponse(BaseModel):
    market: int
    height: int  # the committed height this book reflects
    seq: int  # the book stream's sequence at that height
    bids: list[list[int]]  # [price, open size, orders], best first
    asks: list[list[int]]


class TradeView(BaseModel):
    trade_id: int
    market: int
    price: int
    size: int
    taker_side: str
    height: int
    timestamp_ms: int


class TradesResponse(BaseModel):
    market: int
    height: int
    trades: list[TradeView]  # most recent first


class OrderView(BaseModel):
    oid: int
    account: str
    market: int
    side: str
    kind: str
    price: int
    size: int | None  # original size (null for an order placed before the index began)
    tif: str
    cloid: int | None
    status: str  # open | filled | cancelled | expired
    open: int
    filled: int | None
    reason: str | None
    height: int | None
    timestamp_ms: int | None
    updated_height: int | None
    intent_id: str | None


class OrdersResponse(BaseModel):
    account: str
    height: int
    orders: list[OrderView]


class FillView(BaseModel):
    trade_id: int
    oid: int
    market: int
    side: str
    price: int
    size: int
    fee: int
    maker: bool
    remaining: int
    height: int
    timestamp_ms: int


class FillsResponse(BaseModel):
    account: str
    height: int
    fills: list[FillView]  # most recent first


def asset_view(asset: Any) -> dict[str, Any]:
    view: dict[str, Any] = asset.to_plain()
    view["decimals"] = 18 if asset.token == ZERO_ADDRESS else KNOWN_DECIMALS.get(asset.symbol)
    return view


def install_market_routes(
    app: FastAPI, indexer: Indexer, charge: Any, reply: Any, error: Any
) -> None:
    """Mount the indexer's routes (same conventions as `install_query_routes`)."""
    answer = _answerer(charge, reply, error)
    genesis = indexer.engine.genesis
    markets = {
        "assets": [asset_view(a) for a in genesis.assets],
        "markets": [m.to_plain() for m in genesis.markets],
    }

    def market_of(market: int) -> int:
        if market not in indexer.engine.books:
            raise ApiError(404, "unknown_market", f"no market {market}")
        return market

    def limit_query(default: int, high: int) -> Any:
        return Query(default, ge=1, le=high, description=f"at most {high}")

    @app.get(
        "/v1/markets",
        response_model=MarketsResponse,
        responses=error_responses(429),
        summary="Assets and markets (units, lot and tick sizes, fees)",
    )
    async def list_markets(request: Request) -> Response:
        return answer(request, lambda: markets)

    @app.get(
        "/v1/markets/{market}/book",
        response_model=BookResponse,
        responses=error_responses(400, 404, 429),
        summary="Order book depth, aggregated by price, with the height it reflects",
    )
    async def book(
        request: Request,
        market: int = Path(ge=0, le=2**32 - 1),
        depth: int = limit_query(DEFAULT_DEPTH, MAX_DEPTH),
    ) -> Response:
        return answer(request, lambda: indexer.depth(market_of(market), depth))

    @app.get(
        "/v1/markets/{market}/trades",
        response_model=TradesResponse,
        responses=error_responses(400, 404, 429),
        summary="Recent trades of a market, most recent first",
    )
    async def trades(
        request: Request,
        market: int = Path(ge=0, le=2**32 - 1),
        limit: int = limit_query(DEFAULT_LIMIT, MAX_LIMIT),
    ) -> Response:
        def handler() -> dict[str, Any]:
            found = indexer.trades(market_of(market), limit)
            return {"market": market, "height": indexer.height, "trades": found}

        return answer(request, handler)

    def orders_answer(address: str, orders: list[dict[str, Any]]) -> dict[str, Any]:
        return {"account": address.lower(), "height": indexer.height, "orders": orders}

    @app.get(
        "/v1/accounts/{address}/orders",
        response_model=OrdersResponse,
        responses=error_responses(400, 429),
        summary="Open orders of an account",
    )
    async def open_orders(request: Request, address: str = _address()) -> Response:
        return answer(
            request,
            lambda: orders_answer(address, indexer.open_orders(parse_address(address))),
        )

    @app.get(
        "/v1/accounts/{address}/history",
        response_model=OrdersResponse,
        responses=error_responses(400, 429),
        summary="Recent orders of an account (any status), most recent first",
    )
    async def order_history(
        request: Request,
        address: str = _address(),
        limit: int = limit_query(DEFAULT_LIMIT, MAX_LIMIT),
    ) -> Response:
        return answer(
            request,
            lambda: orders_answer(address, indexer.order_history(parse_address(address), limit)),
        )

    @app.get(
        "/v1/accounts/{address}/fills",
        response_model=FillsResponse,
        responses=error_responses(400, 429),
        summary="Recent fills of an account, most recent first",
    )
    async def fills(
        request: Request,
        address: str = _address(),
        limit: int = limit_query(DEFAULT_LIMIT, MAX_LIMIT),
    ) -> Response:
        def handler() -> dict[str, Any]:
            found = indexer.fills(parse_address(address), limit)
            return {"account": address.lower(), "height": indexer.height, "fills": found}

        return answer(request, handler)

    @app.get(
        "/v1/accounts/{address}/orders/cloid/{cloid}",
        response_model=OrderView,
        responses=error_responses(400, 404, 429),
        summary="An account's latest order with this client order id",
    )
    async def order_by_cloid(
        request: Request, address: str = _address(), cloid: int = _u64()
    ) -> Response:
        return answer(
            request,
            lambda: _found(
                indexer.order_by_cloid(parse_address(address), cloid),
                "no order with that client id",
            ),
        )

    @app.get(
        "/v1/orders/{oid}",
        response_model=OrderView,
        responses=error_responses(400, 404, 429),
        summary="One order by its id",
    )
    async def order(request: Request, oid: int = _u64()) -> Response:
        missing = f"no order {oid} in this node's index"
        return answer(request, lambda: _found(indexer.order(oid), missing))
