"""Read-only queries a node answers from its own replica.

What a trader needs to follow their funds and to claim on chain: balances and open
orders, the checkpoints (roots, signatures, settlement transaction), and Merkle proofs of
a withdrawal or a balance against a checkpoint's roots, in exactly the form the
settlement contract takes (docs/SETTLEMENT.md). With an indexer (node/api/indexer.py) also
the exchange itself: markets and assets, book depth with the height it reflects, trades,
candles and 24 h statistics, an account's orders, fills, deposits and withdrawals (with
the exact arguments of the contract's claim call), one order by id or client id.
Lists are paginated with a cursor and a time range (node/api/history.py). Bytes travel
as 0x-hex; every answer is read on the event loop, so it is the state at one height.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import structlog
from eth_abi.abi import encode as abi_encode
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from matching.merkle import keccak
from node.api.history import INTERVALS, MAX_PAGE, HistoryError, Page
from node.api.intake import ApiError
from node.api.options import install_option_routes
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


class BalanceView(BaseModel):
    asset: int
    available: int  # engine units
    locked: int


class AccountOrderView(BaseModel):
    oid: int
    market: int
    side: str
    price: int
    size: int
    cloid: int | None
    expires_ms: int | None


class AccountResponse(BaseModel):
    address: str
    height: int
    balances: dict[str, BalanceView]  # by asset symbol
    open_orders: list[AccountOrderView] = []


class CheckpointView(BaseModel):
    sequence: int
    height: int  # the committed height whose execution sealed it
    state_root: str
    withdrawals_root: str
    last_deposit_id: int
    # On a node wired to a chain (the settlement loop's record):
    epoch: int | None = None
    digest: str | None = None  # the EIP-712 digest members sign
    signatures: dict[str, str] | None = None  # signer address -> 64-byte signature
    mismatched_peers: list[int] | None = None
    submit_tx: str | None = None  # the transaction that landed it
    landed: bool | None = None  # accepted on chain
    withdrawals: int | None = None  # on a node without a chain: how many it carries


class CheckpointsResponse(BaseModel):
    checkpoints: list[CheckpointView]  # ascending by sequence


class WithdrawalProofResponse(BaseModel):
    sequence: int
    withdrawal_id: int
    account: str
    token: str
    amount: str  # token base units, decimal string (may exceed 2^53)
    leaf: str
    proof: list[str]
    withdrawals_root: str


class BalanceProofResponse(BaseModel):
    account: str
    token: str
    balance: str  # token base units as of the checkpoint, decimal string
    sequence: int
    leaf: str
    proof: list[str]


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

    @app.get(
        "/v1/accounts/{address}",
        response_model=AccountResponse,
        responses=error_responses(400, 429),
        summary="Balances and open orders of an account",
    )
    async def account(request: Request, address: str = _address()) -> Response:
        return answer(request, lambda: facade.account(parse_address(address)))

    @app.get(
        "/v1/checkpoints",
        response_model=CheckpointsResponse,
        responses=error_responses(429),
        summary="Recent checkpoints: height, roots, signatures, settlement tx, landed",
    )
    async def checkpoints(request: Request) -> Response:
        return answer(request, lambda: {"checkpoints": facade.checkpoints()})

    @app.get(
        "/v1/proofs/withdrawal/{sequence}/{withdrawal_id}",
        response_model=WithdrawalProofResponse,
        responses=error_responses(400, 404, 429),
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
        response_model=BalanceProofResponse,
        responses=error_responses(400, 404, 429),
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
        except HistoryError as exc:
            response = error(ApiError(400, exc.code, exc.message, field=exc.field))
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
MAX_LIMIT: Final = MAX_PAGE
MAX_CANDLES: Final = 1000
I63: Final = 2**63 - 1
# The settlement contract's claim function (contracts/src/Settlement.sol).
CLAIM_SIGNATURE: Final = "claimWithdrawal(uint64,uint256,address,address,uint256,bytes32[])"
CLAIM_TYPES: Final = ["uint64", "uint256", "address", "address", "uint256", "bytes32[]"]


class AssetView(BaseModel):
    id: int
    symbol: str
    token: str
    unit: int  # token base units per engine unit
    decimals: int | None  # on-chain decimals of the token, when known


class MarketView(BaseModel):
    id: int
    symbol: str
    kind: str = "spot"  # spot | perp
    base: int | None = None  # asset id; none for a perpetual market
    quote: int  # asset id (a perpetual market's collateral)
    lot_size: int
    tick_size: int
    maker_fee_bps: int
    taker_fee_bps: int
    # Perpetual markets only (docs/MATCHING.md, "Perpetual futures"): sizes count units
    # of the underlying with base_decimals decimals; margin tiers are [max notional,
    # initial bps, maintenance bps]; rates in parts per billion.
    base_decimals: int | None = None
    margin_tiers: list[list[int]] | None = None
    max_leverage: int | None = None
    funding_interval_ms: int | None = None
    funding_cap_ppb: int | None = None
    interest_ppb: int | None = None
    liquidation_fee_bps: int | None = None
    oracle_max_age_ms: int | None = None


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
    next_cursor: str | None  # pass as `cursor` for the next (older) page; null: no more


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
    next_cursor: str | None = None  # history only


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
    next_cursor: str | None


class DepositView(BaseModel):
    deposit_id: int
    account: str
    asset: int
    amount: int  # engine units credited
    token: str | None
    token_amount: str | None  # token base units, decimal string
    height: int  # the committed height that credited it
    timestamp_ms: int
    tx_hash: str | None  # the chain transaction (null when this node did not see it)
    chain_block: int | None
    confirmations: int | None  # chain head − chain_block + 1, as this node's watcher sees it


class DepositsResponse(BaseModel):
    account: str
    height: int
    deposits: list[DepositView]  # most recent first
    next_cursor: str | None


class ClaimSeenView(BaseModel):
    sequence: int
    tx_hash: str
    chain_block: int


class WithdrawalView(BaseModel):
    withdrawal_id: int
    account: str
    asset: int
    amount: int  # engine units debited
    token: str
    token_amount: str  # what the claim pays, token base units (decimal string)
    height: int  # the committed height that debited it
    timestamp_ms: int
    intent_id: str | None
    status: Literal["pending", "checkpointed", "landed", "claimed"]
    sequence: int | None  # the checkpoint that carries it (null while pending)
    checkpoint_height: int | None
    leaf: str | None
    proof: list[str] | None
    claim: ClaimSeenView | None  # the claim seen on chain


class WithdrawalsResponse(BaseModel):
    account: str
    height: int
    withdrawals: list[WithdrawalView]  # most recent first
    next_cursor: str | None


class ClaimArgs(BaseModel):
    sequence: int
    withdrawalId: int
    account: str
    token: str
    amount: str  # uint256, decimal string
    proof: list[str]


class ClaimResponse(BaseModel):
    withdrawal_id: int
    status: Literal["checkpointed", "landed", "claimed"]
    claimable: bool  # landed and not claimed yet: the call succeeds now
    contract: str  # the settlement contract to call
    function: str  # its Solidity signature
    args: ClaimArgs  # the call's arguments, in order
    calldata: str  # the ABI-encoded call (selector and arguments): the transaction's data


class CandlesResponse(BaseModel):
    market: int
    interval: str
    height: int
    # [open_ms, open, high, low, close, volume (base units), quote volume (quote engine
    # units), trades], oldest first
    candles: list[list[int]]


class StatsResponse(BaseModel):
    market: int
    height: int
    timestamp_ms: int  # the latest block's time: the window's end
    start_ms: int  # the window's start (a minute boundary, 24 h before)
    open: int | None
    high: int | None
    low: int | None
    last: int | None
    volume: int  # base engine units
    quote_volume: int  # quote engine units
    trades: int


def asset_view(asset: Any) -> dict[str, Any]:
    view: dict[str, Any] = asset.to_plain()
    view["decimals"] = 18 if asset.token == ZERO_ADDRESS else KNOWN_DECIMALS.get(asset.symbol)
    return view


def claim_answer(withdrawal: dict[str, Any], contract: bytes) -> dict[str, Any]:
    """The exact `claimWithdrawal` call for a checkpointed withdrawal."""
    proof = [bytes.fromhex(p[2:]) for p in withdrawal["proof"]]
    account = bytes.fromhex(withdrawal["account"][2:])
    token = bytes.fromhex(withdrawal["token"][2:])
    amount = int(withdrawal["token_amount"])
    values = [withdrawal["sequence"], withdrawal["withdrawal_id"], account, token, amount, proof]
    calldata = keccak(CLAIM_SIGNATURE.encode())[:4] + abi_encode(CLAIM_TYPES, values)
    return {
        "withdrawal_id": withdrawal["withdrawal_id"],
        "status": withdrawal["status"],
        "claimable": withdrawal["status"] == "landed",
        "contract": "0x" + contract.hex(),
        "function": CLAIM_SIGNATURE,
        "args": {
            "sequence": withdrawal["sequence"],
            "withdrawalId": withdrawal["withdrawal_id"],
            "account": withdrawal["account"],
            "token": withdrawal["token"],
            "amount": withdrawal["token_amount"],
            "proof": withdrawal["proof"],
        },
        "calldata": "0x" + calldata.hex(),
    }


def _paged(key: str, found: Page, **head: Any) -> dict[str, Any]:
    return {**head, key: found.items, "next_cursor": found.next_cursor}


def install_market_routes(
    app: FastAPI, indexer: Indexer, charge: Any, reply: Any, error: Any, contract: bytes
) -> None:
    """Mount the indexer's routes (same conventions as `install_query_routes`);
    `contract`: the settlement contract's address (claims are calls to it)."""
    answer = _answerer(charge, reply, error)

    def markets() -> dict[str, Any]:
        """From the engine's genesis, which grows with every series the committee lists
        (docs/MATCHING.md, "Series by admin action")."""
        genesis = indexer.engine.genesis
        return {
            "assets": [asset_view(a) for a in genesis.assets],
            "markets": [m.to_plain() for m in genesis.markets],
        }

    def market_of(market: int) -> int:
        if market not in indexer.engine.books:
            raise ApiError(404, "unknown_market", f"no market {market}")
        return market

    def limit_query(default: int, high: int) -> Any:
        return Query(default, ge=1, le=high, description=f"at most {high}")

    def cursor_query() -> Any:
        return Query(
            None,
            max_length=64,
            description="`next_cursor` of the previous page (most recent first)",
        )

    def time_query(which: str) -> Any:
        bound = "inclusive" if which == "start" else "exclusive"
        return Query(None, ge=0, le=I63, description=f"block time, ms ({bound})")

    @app.get(
        "/v1/markets",
        response_model=MarketsResponse,
        responses=error_responses(429),
        summary="Assets and markets (units, lot and tick sizes, fees)",
    )
    async def list_markets(request: Request) -> Response:
        return answer(request, markets)

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

    def history_route(
        path: str,
        name: str,
        key: str,
        model: type[BaseModel],
        summary: str,
        read: Callable[..., Page],
        scope: Literal["market", "account"],
        check: Callable[[int], Any] = market_of,
    ) -> None:
        """One paginated history route (limit, cursor, [start_ms, end_ms)): `read(scope
        value, limit, cursor=, start_ms=, end_ms=)` gives the page; the answer is
        `{market|account, height, <key>: items, next_cursor}`. `check(market)` refuses a
        market the list does not cover (a 404)."""
        if scope == "market":

            async def by_market(
                request: Request,
                market: int = Path(ge=0, le=2**32 - 1),
                limit: int = limit_query(DEFAULT_LIMIT, MAX_LIMIT),
                cursor: str | None = cursor_query(),
                start_ms: int | None = time_query("start"),
                end_ms: int | None = time_query("end"),
            ) -> Response:
                def handler() -> dict[str, Any]:
                    check(market)
                    found = read(market, limit, cursor=cursor, start_ms=start_ms, end_ms=end_ms)
                    return _paged(key, found, market=market, height=indexer.height)

                return answer(request, handler)

            route: Callable[..., Any] = by_market
            errors = error_responses(400, 404, 429)
        else:

            async def by_account(
                request: Request,
                address: str = _address(),
                limit: int = limit_query(DEFAULT_LIMIT, MAX_LIMIT),
                cursor: str | None = cursor_query(),
                start_ms: int | None = time_query("start"),
                end_ms: int | None = time_query("end"),
            ) -> Response:
                def handler() -> dict[str, Any]:
                    found = read(
                        parse_address(address), limit, cursor=cursor, start_ms=start_ms,
                        end_ms=end_ms,
                    )  # fmt: skip
                    return _paged(key, found, account=address.lower(), height=indexer.height)

                return answer(request, handler)

            route = by_account
            errors = error_responses(400, 429)
        app.get(path, name=name, response_model=model, responses=errors, summary=summary)(route)

    history_route(
        "/v1/markets/{market}/trades", "trades", "trades", TradesResponse,
        "Trades of a market, most recent first (cursor, time range)", indexer.trades, "market",
    )  # fmt: skip

    @app.get(
        "/v1/markets/{market}/candles",
        response_model=CandlesResponse,
        responses=error_responses(400, 404, 429),
        summary="OHLCV candles of a market, oldest first",
    )
    async def candles(
        request: Request,
        market: int = Path(ge=0, le=2**32 - 1),
        interval: Literal["1m", "5m", "15m", "1h", "4h", "1d"] = Query("1m"),
        start_ms: int | None = time_query("start"),
        end_ms: int | None = time_query("end"),
        limit: int = limit_query(DEFAULT_LIMIT, MAX_CANDLES),
    ) -> Response:
        def handler() -> dict[str, Any]:
            start = 0 if start_ms is None else start_ms
            end = I63 if end_ms is None else end_ms
            if start > end:
                raise HistoryError("bad_range", f"start_ms {start} is after end_ms {end}")
            found = indexer.store.candles(market_of(market), INTERVALS[interval], start, end, limit)
            return {"market": market, "interval": interval, "height": indexer.height,
                    "candles": found}  # fmt: skip

        return answer(request, handler)

    @app.get(
        "/v1/markets/{market}/stats",
        response_model=StatsResponse,
        responses=error_responses(400, 404, 429),
        summary="24 h statistics of a market (open, high, low, last, volume, trades)",
    )
    async def stats(request: Request, market: int = Path(ge=0, le=2**32 - 1)) -> Response:
        def handler() -> dict[str, Any]:
            found = indexer.store.stats(market_of(market), indexer.timestamp_ms)
            return {"market": market, "height": indexer.height,
                    "timestamp_ms": indexer.timestamp_ms, **found}  # fmt: skip

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

    for path, name, key, model, summary, read in (
        ("/v1/accounts/{address}/history", "order_history", "orders", OrdersResponse,
         "Orders of an account (any status), most recent first (cursor, time range)",
         indexer.order_history),
        ("/v1/accounts/{address}/fills", "fills", "fills", FillsResponse,
         "Fills of an account, most recent first (cursor, time range)", indexer.fills),
        ("/v1/accounts/{address}/deposits", "deposits", "deposits", DepositsResponse,
         "Deposits credited to an account, most recent first (cursor, time range)",
         indexer.deposits),
        ("/v1/accounts/{address}/withdrawals", "withdrawals", "withdrawals",
         WithdrawalsResponse, "Withdrawals of an account with their status, most recent first",
         indexer.withdrawals),
    ):  # fmt: skip
        history_route(path, name, key, model, summary, read, "account")

    install_perp_routes(app, indexer, answer, history_route)
    install_option_routes(app, indexer, answer)

    @app.get(
        "/v1/withdrawals/{withdrawal_id}",
        response_model=WithdrawalView,
        responses=error_responses(400, 404, 429),
        summary="One withdrawal and its status (pending, checkpointed, landed, claimed)",
    )
    async def withdrawal(request: Request, withdrawal_id: int = _u64()) -> Response:
        missing = f"no withdrawal {withdrawal_id} in this node's history"
        return answer(request, lambda: _found(indexer.withdrawal(withdrawal_id), missing))

    @app.get(
        "/v1/withdrawals/{withdrawal_id}/claim",
        response_model=ClaimResponse,
        responses=error_responses(400, 404, 409, 429),
        summary="The exact claimWithdrawal call (contract, arguments, calldata)",
    )
    async def claim(request: Request, withdrawal_id: int = _u64()) -> Response:
        def handler() -> dict[str, Any]:
            missing = f"no withdrawal {withdrawal_id} in this node's history"
            found = _found(indexer.withdrawal(withdrawal_id), missing)
            if found["status"] == "pending":
                message = f"withdrawal {withdrawal_id} is pending: it enters the next checkpoint"
                raise ApiError(409, "not_checkpointed", message)
            return claim_answer(found, contract)

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


# ---------------------------------------------------------------------------------------
# Perpetual futures (node/api/perps.py reads the engine; node/api/indexer.py the history)


class PositionView(BaseModel):
    market: int
    symbol: str
    side: Literal["long", "short", "flat"]
    size: int  # signed base units, > 0 long
    entry_price: int | None  # |entry notional| / |lots|, rounded down (per lot)
    entry_notional: int  # signed: the cost of the open size
    mark: int
    notional: int  # signed, at the mark
    unrealized_pnl: int  # notional − entry notional
    realized_pnl: int  # cumulative trading PnL (no fees, no funding)
    funding: int  # cumulative funding received (< 0: paid)
    margin_mode: Literal["cross", "isolated"]
    isolated_margin: int
    equity: int | None  # isolated: margin + unrealized PnL
    leverage: int  # the account's setting for this market
    initial_margin: int  # this market's requirement with its open orders
    maintenance_margin: int
    open_bid_size: int
    open_ask_size: int
    liquidation_price: int | None  # per lot; null: no mark in [0, 2^64) reaches it


class PositionsResponse(BaseModel):
    account: str
    height: int
    positions: list[PositionView]  # market id order; flat ones keep their leverage


class MarginResponse(BaseModel):
    account: str
    height: int
    collateral_asset: int
    collateral: int  # available collateral: the cross margin's cash
    spot_locked: int  # locked by spot buys (not collateral)
    cross_equity: int  # collateral + cross unrealized PnL
    isolated_margin: int
    equity: int  # cross equity + isolated equities
    initial_margin: int  # cross positions and every market's open orders
    maintenance_margin: int  # cross positions
    isolated_maintenance_margin: int
    free_collateral: int  # min(collateral, cross equity − initial margin)
    notional: int  # Σ |size| × mark
    leverage_bps: int | None  # notional × 10^4 / equity; null at equity ≤ 0
    positions: list[PositionView]


class ObservationView(BaseModel):
    member: str  # the member's settlement address
    price: int  # per lot
    seen_ms: int  # block time it was recorded at
    age_ms: int  # relative to the latest block
    fresh: bool


class PricesResponse(BaseModel):
    market: int
    symbol: str
    height: int
    timestamp_ms: int  # the latest block's time
    index_price: int | None  # null while stale
    mark: int | None  # null before the first fresh index; frozen while stale
    premium_ppb: int  # the premium EMA in the mark
    funding_premium_ppb: int  # average premium since the last payment
    funding_rate_ppb: int  # what a payment now would charge longs (< 0: shorts pay)
    next_funding_ms: int | None
    fresh: bool
    state: Literal["fresh", "reduce_only"]
    quorum: int
    fresh_members: int
    oracle_max_age_ms: int
    observations: list[ObservationView]


class AllPricesResponse(BaseModel):
    height: int
    markets: list[PricesResponse]


class FundingRateView(BaseModel):
    market: int
    rate_ppb: int  # > 0: longs paid shorts
    mark: int
    residue: int  # rounding residue to the insurance fund
    height: int
    timestamp_ms: int


class FundingRatesResponse(BaseModel):
    market: int
    height: int
    funding: list[FundingRateView]  # most recent first
    next_cursor: str | None


class FundingPaymentView(BaseModel):
    account: str
    market: int
    amount: int  # > 0 received, < 0 paid (collateral engine units)
    height: int
    timestamp_ms: int


class FundingPaymentsResponse(BaseModel):
    account: str
    height: int
    funding: list[FundingPaymentView]  # most recent first
    next_cursor: str | None


class LiquidationView(BaseModel):
    id: int  # height × 2^24 + place in the block
    kind: Literal[
        "liquidation", "liquidation_order", "fill", "backstop", "deleveraged",
        "liquidation_fee", "bad_debt",
    ]  # fmt: skip
    account: str  # the liquidated account (or the ADL counterparty, role "counterparty")
    market: int | None  # null: the cross unit, a fee, bad debt
    height: int
    timestamp_ms: int
    unit: Literal["cross", "isolated"] | None = None  # liquidation
    equity: int | None = None  # liquidation: the unit's equity and maintenance then
    maintenance: int | None = None
    size: int | None = None  # order / fill / backstop / deleveraged (signed: the account's)
    bankruptcy_price: int | None = None  # liquidation_order
    trade_id: int | None = None  # fill (the liquidation's order, oid 0, through the book)
    side: str | None = None
    price: int | None = None
    fee: int | None = None
    counterparty: str | None = None  # backstop (the insurance fund), deleveraged
    liquidated: str | None = None  # deleveraged
    role: Literal["liquidated", "counterparty"] | None = None  # deleveraged
    amount: int | None = None  # liquidation_fee, to the insurance fund
    deficit: int | None = None  # bad_debt
    covered: int | None = None


class LiquidationsResponse(BaseModel):
    market: int | None = None
    account: str | None = None
    height: int
    liquidations: list[LiquidationView]  # most recent first
    next_cursor: str | None


def install_perp_routes(
    app: FastAPI, indexer: Indexer, answer: Callable[..., Response], history_route: Any
) -> None:
    """Positions, margin, prices, funding and liquidations (docs/API.md, "Perpetual
    futures"). On an exchange without perp markets they answer 404 `not_perp`."""

    def perp_market(market: int) -> Any:
        try:
            return indexer.perp_market(market)
        except LookupError as exc:
            code = "not_perp" if market in indexer.engine.books else "unknown_market"
            raise ApiError(404, code, str(exc)) from None

    def with_perps() -> None:
        if indexer.engine.perps is None:
            raise ApiError(404, "not_perp", "this exchange has no perpetual markets")

    @app.get(
        "/v1/accounts/{address}/positions",
        response_model=PositionsResponse,
        responses=error_responses(400, 404, 429),
        summary="Perpetual positions of an account (entry, PnL, margin mode, liquidation price)",
    )
    async def positions(request: Request, address: str = _address()) -> Response:
        def handler() -> dict[str, Any]:
            with_perps()
            return indexer.positions(parse_address(address))

        return answer(request, handler)

    @app.get(
        "/v1/accounts/{address}/margin",
        response_model=MarginResponse,
        responses=error_responses(400, 404, 429),
        summary="Margin summary of an account: equity, requirements, free collateral, leverage",
    )
    async def margin(request: Request, address: str = _address()) -> Response:
        def handler() -> dict[str, Any]:
            with_perps()
            return indexer.margin(parse_address(address))

        return answer(request, handler)

    @app.get(
        "/v1/prices",
        response_model=AllPricesResponse,
        responses=error_responses(429),
        summary="Index, mark, funding estimate and oracle state of every perpetual market",
    )
    async def all_prices(request: Request) -> Response:
        def handler() -> dict[str, Any]:
            perps = indexer.engine.perps
            markets = [] if perps is None else [indexer.prices(m) for m in sorted(perps.markets)]
            return {"height": indexer.height, "markets": markets}

        return answer(request, handler)

    @app.get(
        "/v1/markets/{market}/prices",
        response_model=PricesResponse,
        responses=error_responses(400, 404, 429),
        summary="Index, mark, funding estimate and oracle observations of a perpetual market",
    )
    async def prices(request: Request, market: int = Path(ge=0, le=2**32 - 1)) -> Response:
        def handler() -> dict[str, Any]:
            perp_market(market)
            return indexer.prices(market)

        return answer(request, handler)

    history_route(
        "/v1/markets/{market}/funding", "funding_rates", "funding", FundingRatesResponse,
        "Funding rates paid in a perpetual market, most recent first (cursor, time range)",
        indexer.funding_rates, "market", perp_market,
    )  # fmt: skip
    history_route(
        "/v1/accounts/{address}/funding", "funding_payments", "funding",
        FundingPaymentsResponse, "Funding payments of an account, most recent first",
        indexer.funding, "account",
    )  # fmt: skip
    history_route(
        "/v1/markets/{market}/liquidations", "market_liquidations", "liquidations",
        LiquidationsResponse,
        "Liquidations, backstops and ADL of a perpetual market, most recent first",
        indexer.market_liquidations, "market", perp_market,
    )  # fmt: skip
    history_route(
        "/v1/accounts/{address}/liquidations", "account_liquidations", "liquidations",
        LiquidationsResponse,
        "Liquidations of an account (fills, backstop, ADL, fees), most recent first",
        indexer.liquidations, "account",
    )  # fmt: skip
