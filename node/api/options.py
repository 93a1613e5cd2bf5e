"""Read-only views of the option markets for the API: the series with their mark vol,
mark and Greeks, and an account's holdings with their Greeks and its margin by scenario
(docs/API.md, "Options"; the rules are docs/MATCHING.md, "Options").

Plain functions of the engine, read on the event loop right after a block (so at one
height), never writing it: they read `OptionMarkets` directly and never call `holder`,
which would create state. Prices, strikes and forwards are collateral engine units per
option lot; Greeks are the engine's fixed-point outputs (options.py: × 10¹⁸, delta per
unit of forward, gamma as F·Γ, vega per 1.00 of vol, theta per year) written as decimal
strings, since they exceed 2⁵³; position Greeks are per-lot Greeks × lots.

It may not touch: the engine's state (read only), consensus, I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from matching import options as op
from matching import portfolio as pf
from node.api.intake import ApiError
from node.api.schema import error_responses
from node.intents import parse_address

if TYPE_CHECKING:
    from matching.engine import Engine
    from matching.optionmarkets import Series
    from node.api.indexer import Indexer


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def greeks(engine: Engine, s: Series) -> op.Greeks | None:
    """The series' Greeks at its mark (None before its first mark, or once settled)."""
    t_ms = s.expiry_ms - engine.timestamp_ms
    if s.settled or not s.forward or t_ms <= 0:
        return None
    return op.greeks(s.is_call, s.forward, s.strike, s.vol, t_ms)


def _greeks_plain(g: op.Greeks | None, lots: int = 1) -> dict[str, str] | None:
    if g is None:
        return None
    return {
        "price": str(g.price * lots),
        "delta": str(g.delta * lots),
        "gamma": str(g.gamma * lots),
        "vega": str(g.vega * lots),
        "theta": str(g.theta * lots),
    }


def series_view(engine: Engine, market: int) -> dict[str, Any] | None:
    """One series: terms, mark vol (and whether the book's mid set it), mark, Greeks."""
    options = engine.options
    s = None if options is None else options.series.get(market)
    if s is None:
        return None
    return {
        "market": s.id,
        "symbol": s.book.market.symbol,
        "underlying": s.underlying.id,
        "right": "call" if s.is_call else "put",
        "strike": s.strike,
        "expiry_ms": s.expiry_ms,
        "underlying_lots": s.underlying_lots,
        "forward": s.forward or None,
        "mark_vol_e9": s.vol,
        "committee_vol_e9": s.committee_vol,
        "vol_source": "book" if s.from_book else "committee",
        "mark": s.mark if s.forward else None,
        "greeks": _greeks_plain(greeks(engine, s)),
        "settled": s.settled,
        "settlement_price": s.settle_price if s.settled else None,
        "twap_samples": s.twap_count,
    }


def series_list(engine: Engine) -> list[dict[str, Any]]:
    options = engine.options
    if options is None:
        return []
    out = []
    for market in sorted(options.series):
        view = series_view(engine, market)
        assert view is not None
        out.append(view)
    return out


def account_view(engine: Engine, address: bytes) -> dict[str, Any]:
    """An account's option holdings with their Greeks, its Greek totals, equity and
    margin, and per underlying the value change of every risk-matrix scenario."""
    options = engine.options
    account = engine.accounts.get(address)
    oa = None if options is None or account is None else options.accounts.get(account)
    out: dict[str, Any] = {
        "account": _hex(address),
        "margin_mode": "standard" if oa is not None and oa.standard else "portfolio",
        "holdings": [],
        "greeks": None,
        "equity": None,
        "maintenance_margin": None,
        "initial_margin": None,
        "scenarios": [],
    }
    if options is None or account is None or oa is None:
        return out
    totals = [0, 0, 0, 0, 0]
    legs: dict[int, list[pf.Position]] = {}
    for market, h in sorted(oa.holdings.items()):
        if not h.size:
            continue
        s = h.series
        lots = h.size // s.lot
        g = greeks(engine, s)
        if g is not None:
            for i, value in enumerate((g.price, g.delta, g.gamma, g.vega, g.theta)):
                totals[i] += value * lots
        if s.vector is not None:
            legs.setdefault(s.underlying.id, []).append((s.vector, lots))
        out["holdings"].append(
            {
                "market": market,
                "symbol": s.book.market.symbol,
                "size": h.size,
                "premium": h.premium,
                "mark": s.mark,
                "value": s.mark_e18 * lots // op.E18,
                "greeks": _greeks_plain(g, lots),
            }
        )
    out["greeks"] = _greeks_plain(op.Greeks(*totals))
    pa = account.perp
    if options.active(account) and pa is not None:
        maintenance, initial = options.requirement(account)
        out["equity"] = options.equity(account)
        out["maintenance_margin"] = maintenance
        out["initial_margin"] = initial
        grid = options.grid
        for underlying, positions in sorted(legs.items()):
            pos = pa.positions.get(underlying)
            vector = options.linear.get(underlying)
            if pos is not None and pos.size and not pos.isolated and vector is not None:
                positions = [*positions, (vector, pos.size // pos.market.lot)]
            pnl = pf.scenario_pnl(grid, positions)
            rows = [
                {
                    "move_bps": grid.moves_bps[i],
                    "vol_shift_e9": grid.vol_shifts_e9[i],
                    "pnl": pnl[i] // op.E18,  # floored: a loss rounds up, as margins
                }
                for i in range(len(grid))
            ]
            out["scenarios"].append({"underlying": underlying, "scenarios": rows})
    return out


# ------------------------------------------------------------------------------ routes


class GreeksView(BaseModel):
    """× 10¹⁸, decimal strings (options.py units)."""

    price: str
    delta: str
    gamma: str
    vega: str
    theta: str


class SeriesView(BaseModel):
    market: int
    symbol: str
    underlying: int  # the perp market whose index is the underlying
    right: Literal["call", "put"]
    strike: int  # per option lot
    expiry_ms: int
    underlying_lots: int
    forward: int | None  # index × underlying_lots; null before the first fresh index
    mark_vol_e9: int
    committee_vol_e9: int
    vol_source: Literal["book", "committee"]
    mark: int | None  # per option lot, floored
    greeks: GreeksView | None  # per lot; null before a mark or once settled
    settled: bool
    settlement_price: int | None
    twap_samples: int


class SeriesListResponse(BaseModel):
    height: int
    timestamp_ms: int
    series: list[SeriesView]


class SeriesResponse(SeriesView):
    height: int
    timestamp_ms: int


class HoldingView(BaseModel):
    market: int
    symbol: str
    size: int  # signed base units
    premium: int  # net premium paid (< 0: received)
    mark: int
    value: int  # at the mark, floored
    greeks: GreeksView | None  # per-lot Greeks × lots


class ScenarioView(BaseModel):
    move_bps: int
    vol_shift_e9: int
    pnl: int  # the account's value change in this scenario (collateral units)


class UnderlyingScenarios(BaseModel):
    underlying: int
    scenarios: list[ScenarioView]


class AccountOptionsResponse(BaseModel):
    account: str
    height: int
    margin_mode: Literal["portfolio", "standard"]
    holdings: list[HoldingView]
    greeks: GreeksView | None  # the sum over holdings
    equity: int | None  # null when the option margin does not apply (no holding, no order)
    maintenance_margin: int | None
    initial_margin: int | None
    scenarios: list[UnderlyingScenarios]  # the risk matrix of each underlying's legs


def install_option_routes(app: FastAPI, indexer: Indexer, answer: Callable[..., Response]) -> None:
    """Series, one series, and an account's options (docs/API.md, "Options"). On an
    exchange without option markets the list is empty and a series answers 404."""

    def stamp() -> dict[str, Any]:
        return {"height": indexer.height, "timestamp_ms": indexer.engine.timestamp_ms}

    @app.get(
        "/v1/options",
        response_model=SeriesListResponse,
        responses=error_responses(429),
        summary="Option series: terms, mark vol, mark and Greeks",
    )
    async def all_series(request: Request) -> Response:
        return answer(request, lambda: {**stamp(), "series": series_list(indexer.engine)})

    @app.get(
        "/v1/options/{market}",
        response_model=SeriesResponse,
        responses=error_responses(400, 404, 429),
        summary="One option series: terms, mark vol (book or committee), mark and Greeks",
    )
    async def one_series(request: Request, market: int = Path(ge=0, le=2**32 - 1)) -> Response:
        def handler() -> dict[str, Any]:
            view = series_view(indexer.engine, market)
            if view is None:
                raise ApiError(404, "not_option", f"market {market} is not an option series")
            return {**stamp(), **view}

        return answer(request, handler)

    @app.get(
        "/v1/accounts/{address}/options",
        response_model=AccountOptionsResponse,
        responses=error_responses(400, 429),
        summary="An account's option holdings, Greeks, margin and scenario P&L",
    )
    async def account_options(
        request: Request,
        address: str = Path(
            description="0x-prefixed 20-byte address", pattern="^0x[0-9a-fA-F]{40}$"
        ),
    ) -> Response:
        def handler() -> dict[str, Any]:
            found = account_view(indexer.engine, parse_address(address))
            return {"height": indexer.height, **found}

        return answer(request, handler)
