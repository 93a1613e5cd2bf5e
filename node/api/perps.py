"""Read-only views of the perpetual-futures state for the API: an account's positions and
margin, a market's prices and oracle, and liquidation prices (docs/API.md, "Perpetual
futures"; the rules are docs/MATCHING.md, "Perpetual futures").

Plain functions of the engine, read on the event loop right after a block (so at one
height), never writing it: they read `Account.perp` directly and never call the engine's
`account_state`/`position`, which would create state. Integers only, in the engine's
units: prices per lot in collateral engine units, sizes in base units, rates in ppb.
Each answer costs O(perp markets of the account) (≤ 1,024 markets), plus ≤ 64 steps of
bisection per position for its liquidation price.

Liquidation price. The engine liquidates a unit (the cross margin, or an isolated
position) at a block's end when its equity is below its maintenance margin. With every
other mark held where it is, g(x) = equity − maintenance as a function of this market's
mark x is monotone: for a long, equity grows by |lots| per unit of x and maintenance by at
most ⌈|lots| × mm / 10⁴⌉ ≤ |lots| (mm < 10⁴), so g never decreases; for a short the
mirror. So the liquidation price is found exactly by integer bisection over x in
[0, 2⁶⁴ − 1]: for a long the highest mark at which g(x) < 0 (the unit is liquidated at
that mark or below), for a short the lowest (at that mark or above); null when no mark
in range reaches it (a long whose margin covers a fall to zero). It moves with every
other input (other marks, funding, fees), as on every exchange.

It may not touch: the engine's state (read only), consensus, I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from matching.config import BPS, U64_MAX
from matching.margin import (
    PerpMarket,
    Position,
    cross_equity,
    cross_initial,
    cross_maintenance,
    isolated_equity,
)
from matching.perp import INTEREST_CLAMP_PPB

if TYPE_CHECKING:
    from matching.accounts import Account
    from matching.engine import Engine

MAX_MARK: Final = U64_MAX


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def perp_market(engine: Engine, market: int) -> PerpMarket | None:
    perps = engine.perps
    return None if perps is None else perps.markets.get(market)


# ---------------------------------------------------------------------------- prices


def funding_estimate(market: PerpMarket) -> tuple[int, int]:
    """(average premium since the last payment, the rate a payment now would use), both
    ppb, by the engine's formula (perp.py `_funding`): clamp(P + clamp(interest − P,
    ±0.05 %), ±cap)."""
    params = market.params
    weight = market.premium_count
    premium = market.premium_sum // weight if weight else 0
    gap = params.interest_ppb - premium
    gap = max(-INTEREST_CLAMP_PPB, min(INTEREST_CLAMP_PPB, gap))
    cap = params.funding_cap_ppb
    rate = max(-cap, min(cap, premium + gap))
    return premium, rate


def prices_view(engine: Engine, market: PerpMarket, symbol: str) -> dict[str, Any]:
    """Index, mark, premium, funding estimate and the oracle's latest observations, as of
    the engine's last block (`timestamp_ms`): ages count from that block's time."""
    perps = engine.perps
    assert perps is not None
    now = engine.timestamp_ms
    params = market.params
    oldest = now - params.oracle_max_age_ms
    observations = [
        {
            "member": _hex(member),
            "price": price,
            "seen_ms": seen_ms,
            "age_ms": now - seen_ms,
            "fresh": seen_ms >= oldest,
        }
        for member, (price, seen_ms) in sorted(perps.oracle.observations[market.id].items())
    ]
    premium, rate = funding_estimate(market)
    return {
        "market": market.id,
        "symbol": symbol,
        "timestamp_ms": now,
        "index_price": market.index if market.fresh else None,
        "mark": market.mark or None,
        "premium_ppb": market.premium_ema,
        "funding_premium_ppb": premium,
        "funding_rate_ppb": rate,
        "next_funding_ms": market.next_funding_ms or None,
        "fresh": market.fresh,
        "state": "fresh" if market.fresh else "reduce_only",
        "quorum": perps.oracle.quorum,
        "fresh_members": sum(1 for o in observations if o["fresh"]),
        "oracle_max_age_ms": params.oracle_max_age_ms,
        "observations": observations,
    }


# ---------------------------------------------------------------------------- positions


def _liquidation_price(pos: Position, base: int, lots: int) -> int | None:
    """The mark of `pos`'s market at which its unit falls under maintenance, all else
    held: g(x) = base + lots × x − tiers.maintenance(|lots| × x), where `base` is the
    unit's equity and maintenance without this position's mark-dependent parts."""
    tiers = pos.market.tiers
    size = abs(lots)

    def under(x: int) -> bool:
        return base + lots * x - tiers.maintenance(size * x) < 0

    if lots > 0:
        if not under(0):
            return None
        lo, hi = 0, MAX_MARK  # under(lo); the answer is the highest such x
        if under(hi):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if under(mid):
                lo = mid
            else:
                hi = mid
        return lo
    if not under(MAX_MARK):
        return None
    lo, hi = 0, MAX_MARK  # under(hi); the answer is the lowest such x
    if under(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if under(mid):
            hi = mid
        else:
            lo = mid
    return hi


def cross_base(account: Account, coll: int) -> int:
    """Cross equity minus cross maintenance at the current marks."""
    pa = account.perp
    assert pa is not None
    held = pa.positions
    return cross_equity(held, account.available[coll]) - cross_maintenance(held)


def liquidation_price(pos: Position, base: int) -> int | None:
    """The liquidation price of an open position (None when flat or out of range).
    `base`: the account's `cross_base` (read for a cross position only)."""
    lots = pos.size // pos.market.lot
    if not lots:
        return None
    if pos.isolated:
        return _liquidation_price(pos, pos.margin - pos.entry, lots)
    # This position's own mark-dependent parts out: what stays is the rest of the unit.
    mark = pos.market.mark
    own = lots * mark - pos.entry - pos.maintenance()
    return _liquidation_price(pos, base - own - pos.entry, lots)


def position_view(pos: Position, base: int, symbol: str) -> dict[str, Any]:
    market = pos.market
    lots = pos.size // market.lot
    value = lots * market.mark
    entry_price = abs(pos.entry) // abs(lots) if lots else None
    return {
        "market": market.id,
        "symbol": symbol,
        "side": "long" if pos.size > 0 else "short" if pos.size < 0 else "flat",
        "size": pos.size,  # signed base units, > 0 long
        "entry_price": entry_price,  # |entry notional| / |lots|, rounded down
        "entry_notional": pos.entry,
        "mark": market.mark,
        "notional": value,  # signed, at the mark
        "unrealized_pnl": value - pos.entry,
        "realized_pnl": pos.realized,
        "funding": pos.funding,
        "margin_mode": "isolated" if pos.isolated else "cross",
        "isolated_margin": pos.margin,
        "equity": isolated_equity(pos) if pos.isolated else None,
        "leverage": pos.leverage,
        "initial_margin": pos.initial() if (pos.size or pos.bid_size or pos.ask_size) else 0,
        "maintenance_margin": pos.maintenance(),
        "open_bid_size": pos.bid_size,
        "open_ask_size": pos.ask_size,
        "liquidation_price": liquidation_price(pos, base),
    }


def positions(engine: Engine, address: bytes, symbols: dict[int, str]) -> list[dict[str, Any]]:
    """Every perp position the account has used (market id order; flat ones keep their
    leverage setting). O(positions), plus one bisection per open position."""
    perps = engine.perps
    account = engine.accounts.get(address)
    if perps is None or account is None or account.perp is None:
        return []
    base = cross_base(account, perps.coll)
    found = account.perp.positions
    return [position_view(found[m], base, symbols[m]) for m in sorted(found)]


def margin(engine: Engine, address: bytes, symbols: dict[int, str]) -> dict[str, Any]:
    """The account's margin summary: collateral, equity, requirements, free collateral,
    leverage and every position with its liquidation price."""
    perps = engine.perps
    assert perps is not None
    coll = perps.coll
    account = engine.accounts.get(address)
    pa = None if account is None else account.perp
    cash = 0 if account is None else account.available[coll]
    locked = 0 if account is None else account.locked[coll]
    held = {} if pa is None else pa.positions
    cross = cross_equity(held, cash)
    isolated = [p for p in held.values() if p.isolated and p.size]
    equity = cross + sum(isolated_equity(p) for p in isolated)
    notional = sum(abs(p.value()) for p in held.values() if p.size)
    free = perps.cross_free(account) if account is not None else 0
    return {
        "collateral_asset": perps.coll_id,
        "collateral": cash,  # the collateral's available balance: the cross margin's cash
        "spot_locked": locked,  # locked by spot buys: not collateral
        "cross_equity": cross,
        "isolated_margin": sum(p.margin for p in held.values()),
        "equity": equity,  # cross equity + every isolated position's equity
        "initial_margin": cross_initial(held),  # what cross must cover, open orders included
        "maintenance_margin": cross_maintenance(held),  # cross positions
        "isolated_maintenance_margin": sum(p.maintenance() for p in isolated),
        "free_collateral": free,  # min(available, cross equity − initial margin)
        "notional": notional,  # Σ |size| × mark over positions
        # Σ |notional| × 10⁴ / equity (basis points: 25,000 is 2.5×); null at equity ≤ 0
        "leverage_bps": notional * BPS // equity if equity > 0 else None,
        "positions": [] if account is None else positions(engine, address, symbols),
    }
