"""Genesis of the exchange: assets, markets, the fee account and the engine's limits.

Built from a plain dict (what the node's TOML genesis or a replay log's first line holds)
and validated once, so the engine's hot path never re-checks it. Addresses are 20 bytes
inside the engine; the plain form writes them as 0x-hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

U32_MAX: Final = (1 << 32) - 1
U64_MAX: Final = (1 << 64) - 1
BPS: Final = 10_000
MAX_FEE_BPS: Final = (
    1_000  # 10 %: a seller's proceeds stay positive, a buyer's reserve stays bounded
)
MAX_ASSETS: Final = 1_024
MAX_MARKETS: Final = 1_024
SYMBOL_MAX_BYTES: Final = 32


class ConfigError(ValueError):
    """A genesis that the engine refuses to start from."""


def parse_address(value: object, what: str) -> bytes:
    """20 bytes, or 0x-hex of 20 bytes."""
    if isinstance(value, bytes) and len(value) == 20:
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X") and len(value) == 42:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ConfigError(f"{what}: expected a 20-byte address (0x + 40 hex digits), got {value!r}")


def address_hex(address: bytes) -> str:
    return "0x" + address.hex()


def _uint(raw: dict[str, Any], key: str, what: str, low: int = 0, high: int = U64_MAX) -> int:
    if key not in raw:
        raise ConfigError(f"{what}: missing {key!r}")
    value = raw[key]
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{what}: {key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _symbol(raw: dict[str, Any], what: str) -> str:
    value = raw.get("symbol")
    if not isinstance(value, str) or not 0 < len(value.encode()) <= SYMBOL_MAX_BYTES:
        raise ConfigError(f"{what}: symbol must be a non-empty string of at most 32 bytes")
    return value


@dataclass(frozen=True, slots=True)
class Asset:
    id: int
    symbol: str
    token: bytes  # on-chain token address; 20 zero bytes for ETH
    unit: int  # on-chain base units per engine unit (a power of ten)

    def to_plain(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "symbol": self.symbol,
            "token": address_hex(self.token),
            "unit": self.unit,
        }


@dataclass(frozen=True, slots=True)
class Market:
    id: int
    symbol: str
    base: int  # asset id
    quote: int  # asset id
    lot_size: int  # base engine units per lot
    tick_size: int  # quote engine units per lot per tick
    maker_fee_bps: int
    taker_fee_bps: int

    def to_plain(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "symbol": self.symbol,
            "base": self.base,
            "quote": self.quote,
            "lot_size": self.lot_size,
            "tick_size": self.tick_size,
            "maker_fee_bps": self.maker_fee_bps,
            "taker_fee_bps": self.taker_fee_bps,
        }


@dataclass(frozen=True, slots=True)
class Genesis:
    assets: tuple[Asset, ...]
    markets: tuple[Market, ...]
    fee_account: bytes

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Genesis:
        if not isinstance(raw, dict):
            raise ConfigError("genesis must be a mapping")
        fee_account = parse_address(raw.get("fee_account"), "fee_account")
        raw_assets = raw.get("assets")
        raw_markets = raw.get("markets")
        if not isinstance(raw_assets, list) or not 0 < len(raw_assets) <= MAX_ASSETS:
            raise ConfigError(f"assets must be a list of 1..{MAX_ASSETS} tables")
        if not isinstance(raw_markets, list) or len(raw_markets) > MAX_MARKETS:
            raise ConfigError(f"markets must be a list of at most {MAX_MARKETS} tables")
        assets = tuple(_asset(a, i) for i, a in enumerate(raw_assets))
        markets = tuple(_market(m, i) for i, m in enumerate(raw_markets))
        genesis = cls(assets=assets, markets=markets, fee_account=fee_account)
        genesis.check()
        return genesis

    def check(self) -> None:
        asset_ids = [a.id for a in self.assets]
        if len(set(asset_ids)) != len(asset_ids):
            raise ConfigError("asset ids must be unique")
        if len({a.token for a in self.assets}) != len(self.assets):
            raise ConfigError("asset token addresses must be unique")
        market_ids = [m.id for m in self.markets]
        if len(set(market_ids)) != len(market_ids):
            raise ConfigError("market ids must be unique")
        for m in self.markets:
            if m.base not in asset_ids or m.quote not in asset_ids:
                raise ConfigError(f"market {m.symbol}: unknown base or quote asset")
            if m.base == m.quote:
                raise ConfigError(f"market {m.symbol}: base and quote must differ")

    def to_dict(self) -> dict[str, Any]:
        return {
            "fee_account": address_hex(self.fee_account),
            "assets": [a.to_plain() for a in self.assets],
            "markets": [m.to_plain() for m in self.markets],
        }


def _asset(raw: object, index: int) -> Asset:
    what = f"assets[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: expected a table")
    unit = _uint(raw, "unit", what, 1)
    if 10 ** (len(str(unit)) - 1) != unit:
        raise ConfigError(f"{what}: unit must be a power of ten, got {unit}")
    return Asset(
        id=_uint(raw, "id", what, 0, U32_MAX),
        symbol=_symbol(raw, what),
        token=parse_address(raw.get("token"), f"{what}.token"),
        unit=unit,
    )


def _market(raw: object, index: int) -> Market:
    what = f"markets[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: expected a table")
    return Market(
        id=_uint(raw, "id", what, 0, U32_MAX),
        symbol=_symbol(raw, what),
        base=_uint(raw, "base", what, 0, U32_MAX),
        quote=_uint(raw, "quote", what, 0, U32_MAX),
        lot_size=_uint(raw, "lot_size", what, 1),
        tick_size=_uint(raw, "tick_size", what, 1),
        maker_fee_bps=_uint(raw, "maker_fee_bps", what, 0, MAX_FEE_BPS),
        taker_fee_bps=_uint(raw, "taker_fee_bps", what, 0, MAX_FEE_BPS),
    )
