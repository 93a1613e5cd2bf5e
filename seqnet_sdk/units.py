"""Exact conversion between human decimals and the exchange's integers (PROTOCOL.md §1).

A trader writes "3000.5" USDC per ETH and "0.25" ETH; the engine wants a price in quote
engine units per lot (a multiple of the tick) and a size in base engine units (a
multiple of the lot). Conversions are exact: a value that does not land on the grid is
refused with `OffGrid`, never rounded, so an order is never silently changed. Floats
are refused too (0.1 is not 1/10 in binary); pass strings, Decimals or ints.

    engine units of an asset = human amount × 10^(decimals − log10(unit))
    price (per lot)          = human price × lot_size × 10^(quote_exp − base_exp)
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

Number = str | Decimal | int
_CONTEXT = decimal.Context(prec=120, traps=[decimal.InvalidOperation, decimal.Inexact])


class OffGrid(ValueError):
    """A price or size that is not a whole number of ticks or lots (or not positive)."""


def to_decimal(value: Number, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise TypeError(f"{what} must be a str, Decimal or int, not {type(value).__name__}")
    try:
        result = Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a decimal number") from None
    if not result.is_finite():
        raise ValueError(f"{what} must be finite")
    return result


def _tidy(value: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent: 3000, 0.001."""
    if value == value.to_integral_value(context=_CONTEXT):
        return value.quantize(Decimal(1), context=_CONTEXT)
    return value.normalize(_CONTEXT)


def _integral(value: Decimal, what: str, shown: Number) -> int:
    if value != value.to_integral_value(context=_CONTEXT):
        raise OffGrid(f"{what} {shown} is finer than the smallest unit")
    return int(value)


@dataclass(frozen=True, slots=True)
class AssetInfo:
    id: int
    symbol: str
    token: str
    unit: int  # on-chain base units per engine unit
    decimals: int | None  # on-chain decimals, if the node knows them

    @property
    def exponent(self) -> int:
        """Decimal places of one engine unit: engine units = human × 10^exponent."""
        if self.decimals is None:
            raise ValueError(f"{self.symbol}: the node does not know its decimals; use units")
        return self.decimals - (len(str(self.unit)) - 1)

    def to_units(self, amount: Number) -> int:
        """Engine units of a human amount (exact, positive)."""
        value = to_decimal(amount, "amount")
        units = _integral(value.scaleb(self.exponent, _CONTEXT), f"{self.symbol} amount", amount)
        if units <= 0:
            raise OffGrid(f"amount {amount} must be positive")
        return units

    def from_units(self, units: int) -> Decimal:
        return _tidy(Decimal(units).scaleb(-self.exponent, _CONTEXT))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AssetInfo:
        return cls(raw["id"], raw["symbol"], raw["token"], raw["unit"], raw.get("decimals"))


@dataclass(frozen=True, slots=True)
class MarketInfo:
    id: int
    symbol: str
    base: AssetInfo
    quote: AssetInfo
    lot_size: int
    tick_size: int
    maker_fee_bps: int
    taker_fee_bps: int

    def size_to_units(self, size: Number) -> int:
        """Base engine units of a human size; refused unless a positive whole number of lots."""
        units = self.base.to_units(size)
        if units % self.lot_size:
            lot = self.base.from_units(self.lot_size)
            raise OffGrid(f"size {size} is not a multiple of the lot {lot} {self.base.symbol}")
        return units

    def price_to_ticks(self, price: Number) -> int:
        """Quote engine units per lot of a human price (quote per base); refused unless a
        positive whole number of ticks."""
        value = to_decimal(price, "price")
        exponent = self.quote.exponent - self.base.exponent
        per_lot = _integral(
            (value * self.lot_size).scaleb(exponent, _CONTEXT), f"{self.symbol} price", price
        )
        if per_lot <= 0:
            raise OffGrid(f"price {price} must be positive")
        if per_lot % self.tick_size:
            raise OffGrid(f"price {price} is not a multiple of the tick {self.tick()}")
        return per_lot

    def units_to_size(self, units: int) -> Decimal:
        return self.base.from_units(units)

    def ticks_to_price(self, per_lot: int) -> Decimal:
        exponent = self.quote.exponent - self.base.exponent
        return _tidy(Decimal(per_lot).scaleb(-exponent, _CONTEXT) / self.lot_size)

    def tick(self) -> Decimal:
        """The price step in human units."""
        return self.ticks_to_price(self.tick_size)

    def lot(self) -> Decimal:
        return self.base.from_units(self.lot_size)


@dataclass(frozen=True, slots=True)
class Markets:
    """What GET /v1/markets says, looked up by id or symbol."""

    assets: dict[int, AssetInfo]
    markets: dict[int, MarketInfo]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Markets:
        assets = {a["id"]: AssetInfo.from_json(a) for a in raw["assets"]}
        markets = {
            m["id"]: MarketInfo(
                m["id"],
                m["symbol"],
                _underlying(m) if m.get("kind") in ("perp", "option") else assets[m["base"]],
                assets[m["quote"]],
                m["lot_size"],
                m["tick_size"],
                m["maker_fee_bps"],
                m["taker_fee_bps"],
            )
            for m in raw["markets"]
        }
        return cls(assets, markets)

    def market(self, which: int | str) -> MarketInfo:
        if isinstance(which, int):
            if which in self.markets:
                return self.markets[which]
        else:
            for market in self.markets.values():
                if market.symbol.upper() == which.upper():
                    return market
        raise KeyError(f"unknown market {which!r}")

    def asset(self, which: int | str) -> AssetInfo:
        if isinstance(which, int):
            if which in self.assets:
                return self.assets[which]
        else:
            for asset in self.assets.values():
                if asset.symbol.upper() == which.upper():
                    return asset
        raise KeyError(f"unknown asset {which!r}")


# Which integer fields of each history record are prices, sizes (base) or quote amounts.
_PRICE_FIELDS: Final = (
    "price", "entry_price", "mark", "liquidation_price", "index_price", "bankruptcy_price"
)  # fmt: skip
_SIZE_FIELDS: Final = ("size", "open", "filled", "remaining", "open_bid_size", "open_ask_size")
# Quote (a perp market's collateral) amounts of positions, funding and liquidation records.
_QUOTE_FIELDS: Final = (
    "fee", "entry_notional", "notional", "unrealized_pnl", "realized_pnl", "funding",
    "isolated_margin", "equity", "initial_margin", "maintenance_margin", "maintenance",
    "residue", "deficit", "covered",
)  # fmt: skip
# Collateral amounts of a margin summary (GET /v1/accounts/{address}/margin).
_MARGIN_FIELDS: Final = (
    "collateral", "spot_locked", "cross_equity", "isolated_margin", "equity",
    "initial_margin", "maintenance_margin", "isolated_maintenance_margin", "free_collateral",
    "notional",
)  # fmt: skip


def with_decimals(markets: Markets, record: dict[str, Any]) -> dict[str, Any]:
    """The record with an exact Decimal beside each engine integer it carries:
    `price_decimal` (quote per base; and `mark_`, `entry_price_`, `liquidation_price_`,
    …), `size_decimal` (and `open_`, `filled_`, `remaining_`: base units, signed for a
    position), `fee_decimal`, `unrealized_pnl_decimal`, … (quote), `amount_decimal` (the
    record's asset; a perp record's collateral). The integers stay as they are, so nothing
    is lost."""
    out = dict(record)
    market = markets.markets.get(record["market"]) if "market" in record else None
    if market is not None:
        for name in _PRICE_FIELDS:
            if isinstance(record.get(name), int):
                out[f"{name}_decimal"] = market.ticks_to_price(record[name])
        for name in _SIZE_FIELDS:
            if isinstance(record.get(name), int):
                out[f"{name}_decimal"] = market.units_to_size(record[name])
        quote = market.quote
        for name in _QUOTE_FIELDS:
            if isinstance(record.get(name), int) and quote.decimals is not None:
                out[f"{name}_decimal"] = quote.from_units(record[name])
        amount = record.get("amount")
        # funding payments, liquidation fees: in the market's collateral
        if "asset" not in record and isinstance(amount, int) and quote.decimals is not None:
            out["amount_decimal"] = quote.from_units(amount)
    asset = markets.assets.get(record["asset"]) if "asset" in record else None
    if asset is not None and asset.decimals is not None and isinstance(record.get("amount"), int):
        out["amount_decimal"] = asset.from_units(record["amount"])
    return out


def margin_decimals(markets: Markets, raw: dict[str, Any]) -> dict[str, Any]:
    """A margin summary with Decimals of its collateral amounts (`equity_decimal`, …),
    `leverage` (a Decimal: 2.5 for 25,000 bps) and each position `with_decimals`."""
    out = dict(raw)
    collateral = markets.asset(raw["collateral_asset"])
    if collateral.decimals is not None:
        for name in _MARGIN_FIELDS:
            if isinstance(raw.get(name), int):
                out[f"{name}_decimal"] = collateral.from_units(raw[name])
    bps = raw.get("leverage_bps")
    out["leverage"] = None if bps is None else _tidy(Decimal(bps).scaleb(-4, _CONTEXT))
    out["positions"] = [with_decimals(markets, p) for p in raw.get("positions", [])]
    return out


def candle_view(market: MarketInfo, raw: list[int]) -> dict[str, Any]:
    """A candle row ([open_ms, open, high, low, close, volume, quote_volume, trades]) as a
    dict with the integers and their Decimals (`open_decimal`, …, `volume_decimal`)."""
    names = ("open_ms", "open", "high", "low", "close", "volume", "quote_volume", "trades")
    out: dict[str, Any] = dict(zip(names, raw, strict=True))
    return {**out, **stats_decimals(market, out)}


def stats_decimals(market: MarketInfo, raw: dict[str, Any]) -> dict[str, Decimal]:
    """Decimals of the price and volume fields of a candle or 24 h statistics."""
    out: dict[str, Decimal] = {}
    for name in ("open", "high", "low", "close", "last"):
        if isinstance(raw.get(name), int):
            out[f"{name}_decimal"] = market.ticks_to_price(raw[name])
    if isinstance(raw.get("volume"), int):
        out["volume_decimal"] = market.units_to_size(raw["volume"])
    if isinstance(raw.get("quote_volume"), int):
        out["quote_volume_decimal"] = market.quote.from_units(raw["quote_volume"])
    return out


def _underlying(market: dict[str, Any]) -> AssetInfo:
    """A perpetual market has no on-chain base asset: its sizes count units of the
    underlying with `base_decimals` decimals (docs/MATCHING.md, "Perpetual futures"). An
    option series has none either: its sizes count contracts (no decimals), its prices are
    per contract."""
    symbol = str(market["symbol"]).split("-")[0]
    return AssetInfo(-1, symbol, "0x" + "00" * 20, 1, int(market.get("base_decimals", 0)))
