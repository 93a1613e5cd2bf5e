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
# Perpetual futures (docs/MATCHING.md, "Perpetual futures").
RATE_SCALE: Final = 10**9  # funding rates, premiums, interest: parts per billion (ppb)
MAX_LEVERAGE: Final = 200
MAX_MARGIN_TIERS: Final = 16
MAX_ORACLE_MEMBERS: Final = 256
DEFAULT_FUNDING_INTERVAL_MS: Final = 3_600_000
DEFAULT_FUNDING_CAP_PPB: Final = 40_000_000  # 4 % per interval (Hyperliquid's hourly cap)
DEFAULT_INTEREST_PPB: Final = 12_500  # 0.00125 % per interval = 0.01 % per 8 h
DEFAULT_LIQUIDATION_FEE_BPS: Final = 100
DEFAULT_ORACLE_MAX_AGE_MS: Final = 15_000
# Frequent batch auctions (docs/MATCHING.md, "Batch auctions"): a market clears every
# `auction_blocks` blocks; 0 is the continuous book.
MAX_AUCTION_BLOCKS: Final = 10_000
# Options (docs/MATCHING.md, "Options"): European, cash-settled series on a perp market's
# index, and the margin and mark-vol rules shared by every series.
MAX_VOL_E9: Final = 10 * 10**9  # 1,000 % (options.MAX_VOL_E9; config imports no maths)
MAX_UNDERLYING_LOTS: Final = 10**12


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
class PerpParams:
    """A perpetual market's risk and funding parameters (docs/MATCHING.md). Margin tiers
    are (max_notional, initial_bps, maintenance_bps) by ascending notional in quote engine
    units; the last tier also applies beyond its max_notional."""

    margin_tiers: tuple[tuple[int, int, int], ...]
    max_leverage: int
    funding_interval_ms: int
    funding_cap_ppb: int
    interest_ppb: int
    liquidation_fee_bps: int
    oracle_max_age_ms: int
    # Decimals of the underlying in a size unit: 1.0 of it is 10**base_decimals base
    # units (BTC-PERP: 8, sizes in satoshi). Only the node's oracle feeder reads it, to
    # turn a ticker's price into ticks; the engine never does.
    base_decimals: int = 0

    def to_plain(self) -> dict[str, Any]:
        return {
            "margin_tiers": [list(t) for t in self.margin_tiers],
            "max_leverage": self.max_leverage,
            "funding_interval_ms": self.funding_interval_ms,
            "funding_cap_ppb": self.funding_cap_ppb,
            "interest_ppb": self.interest_ppb,
            "liquidation_fee_bps": self.liquidation_fee_bps,
            "oracle_max_age_ms": self.oracle_max_age_ms,
            "base_decimals": self.base_decimals,
        }


@dataclass(frozen=True, slots=True)
class OptionParams:
    """A series: a European call or put on `underlying_lots` lots of a perp market's index,
    cash-settled in the collateral at `expiry_ms`. `strike` is in price units per option
    lot (as the option's own prices), so the forward is index x underlying_lots; `vol_e9`
    is the committee vol used until the committee publishes one."""

    underlying: int  # the perp market whose oracle index is the underlying
    strike: int
    expiry_ms: int
    right: str  # "call" or "put"
    underlying_lots: int
    vol_e9: int

    @property
    def is_call(self) -> bool:
        return self.right == "call"

    def to_plain(self) -> dict[str, Any]:
        return {
            "underlying": self.underlying,
            "strike": self.strike,
            "expiry_ms": self.expiry_ms,
            "right": self.right,
            "underlying_lots": self.underlying_lots,
            "vol_e9": self.vol_e9,
        }


@dataclass(frozen=True, slots=True)
class OptionRules:
    """Margin, mark-vol and settlement rules of every option series (docs/MATCHING.md,
    "Options"); the genesis table `option_rules`, each key optional."""

    price_move_bps: int = 1_500
    price_steps: int = 3
    vol_shift_e9: int = 150_000_000
    vol_floor_e9: int = 50_000_000
    initial_bps: int = 13_000
    short_option_bps: int = 1_500
    short_option_min_bps: int = 1_000
    linear_bps: int = 500
    min_depth: int = 1  # lots at each best price for the book's mid to count
    max_spread_bps: int = 2_000
    max_deviation_e9: int = 100_000_000
    vol_max_age_ms: int = 60_000  # a committee vol older than this no longer counts
    twap_ms: int = 300_000  # settlement: the index averaged over this window before expiry
    liquidation_band_bps: int = 2_000  # a liquidation's IOC crosses at most this off the mark

    def to_plain(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _, _ in _OPTION_RULES}


_OPTION_RULES: Final = (
    ("price_move_bps", 1, BPS - 1),
    ("price_steps", 1, 50),
    ("vol_shift_e9", 0, MAX_VOL_E9),
    ("vol_floor_e9", 0, MAX_VOL_E9),
    ("initial_bps", BPS, 10 * BPS),
    ("short_option_bps", 0, BPS),
    ("short_option_min_bps", 0, BPS),
    ("linear_bps", 0, BPS),
    ("min_depth", 1, U64_MAX),
    ("max_spread_bps", 0, BPS),
    ("max_deviation_e9", 0, MAX_VOL_E9),
    ("vol_max_age_ms", 1, U32_MAX),
    ("twap_ms", 0, U32_MAX),
    ("liquidation_band_bps", 1, BPS - 1),
)


def _option_rules(raw: object) -> OptionRules:
    if raw is None:
        return OptionRules()
    if not isinstance(raw, dict):
        raise ConfigError("option_rules must be a table")
    names = {name for name, _, _ in _OPTION_RULES}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"option_rules: unknown keys {unknown}")
    values = {
        name: _uint(raw, name, "option_rules", low, high)
        for name, low, high in _OPTION_RULES
        if name in raw
    }
    return OptionRules(**values)


@dataclass(frozen=True, slots=True)
class Market:
    id: int
    symbol: str
    base: int | None  # asset id; None for a perpetual market (no on-chain base asset)
    quote: int  # asset id (a perpetual market's collateral)
    lot_size: int  # base engine units per lot (a perp: contract units per lot)
    tick_size: int  # quote engine units per lot per tick
    maker_fee_bps: int
    taker_fee_bps: int
    perp: PerpParams | None = None  # set iff kind == "perp"
    # 0: continuous matching; N >= 1: a batch auction clearing at the end of every N-th
    # block (docs/MATCHING.md, "Batch auctions"). Spot markets only.
    auction_blocks: int = 0
    option: OptionParams | None = None  # set iff kind == "option"

    @property
    def kind(self) -> str:
        if self.option is not None:
            return "option"
        return "spot" if self.perp is None else "perp"

    def to_plain(self) -> dict[str, Any]:
        plain: dict[str, Any] = {"id": self.id, "symbol": self.symbol}
        if self.perp is not None:
            plain["kind"] = "perp"
        elif self.option is not None:
            plain["kind"] = "option"
        else:
            plain["base"] = self.base
        plain.update(
            {
                "quote": self.quote,
                "lot_size": self.lot_size,
                "tick_size": self.tick_size,
                "maker_fee_bps": self.maker_fee_bps,
                "taker_fee_bps": self.taker_fee_bps,
            }
        )
        if self.perp is not None:
            plain.update(self.perp.to_plain())
        if self.auction_blocks:  # absent when continuous: older genesis files stay unchanged
            plain["auction_blocks"] = self.auction_blocks
        if self.option is not None:
            plain.update(self.option.to_plain())
        return plain


@dataclass(frozen=True, slots=True)
class Genesis:
    assets: tuple[Asset, ...]
    markets: tuple[Market, ...]
    fee_account: bytes
    # Required only with perpetual markets: the backstop account that receives liquidation
    # fees and funding residue, and the committee members whose oracle entries count.
    insurance_account: bytes | None = None
    oracle_members: tuple[bytes, ...] = ()
    oracle_quorum: int = 0
    option_rules: OptionRules | None = None  # set iff there are option markets

    @property
    def perp_markets(self) -> tuple[Market, ...]:
        return tuple(m for m in self.markets if m.perp is not None)

    @property
    def option_markets(self) -> tuple[Market, ...]:
        return tuple(m for m in self.markets if m.option is not None)

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
        insurance = None
        members: tuple[bytes, ...] = ()
        quorum = 0
        if any(m.perp is not None for m in markets):
            insurance = parse_address(raw.get("insurance_account"), "insurance_account")
            raw_members = raw.get("oracle_members")
            if not isinstance(raw_members, list) or not 0 < len(raw_members) <= MAX_ORACLE_MEMBERS:
                raise ConfigError(f"oracle_members must be a list of 1..{MAX_ORACLE_MEMBERS}")
            members = tuple(
                parse_address(a, f"oracle_members[{i}]") for i, a in enumerate(raw_members)
            )
            quorum = _uint(raw, "oracle_quorum", "genesis", 1, len(members))
        rules = None
        if any(m.option is not None for m in markets):
            rules = _option_rules(raw.get("option_rules"))
        genesis = cls(
            assets=assets,
            markets=markets,
            fee_account=fee_account,
            insurance_account=insurance,
            oracle_members=members,
            oracle_quorum=quorum,
            option_rules=rules,
        )
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
            if m.quote not in asset_ids or (
                m.perp is None and m.option is None and m.base not in asset_ids
            ):
                raise ConfigError(f"market {m.symbol}: unknown base or quote asset")
            if m.base == m.quote:
                raise ConfigError(f"market {m.symbol}: base and quote must differ")
            if not 0 <= m.auction_blocks <= MAX_AUCTION_BLOCKS or (
                m.perp is not None and m.auction_blocks
            ):
                raise ConfigError(
                    f"market {m.symbol}: auction_blocks must be 0..{MAX_AUCTION_BLOCKS}, "
                    "and 0 on a perp market"
                )
        perps = self.perp_markets
        if perps:
            # One collateral for every perpetual market: cross margin is one balance.
            if len({m.quote for m in perps}) != 1:
                raise ConfigError("every perp market must have the same quote (collateral)")
            if len(set(self.oracle_members)) != len(self.oracle_members):
                raise ConfigError("oracle_members must be distinct")
            special = {self.fee_account, self.insurance_account}
            if len(special) != 2:
                raise ConfigError("insurance_account must differ from fee_account")
        perp_ids = {m.id for m in perps}
        for m in self.option_markets:
            assert m.option is not None
            if m.option.underlying not in perp_ids:
                raise ConfigError(f"market {m.symbol}: underlying must be a perp market's id")
            if m.quote != perps[0].quote:
                raise ConfigError(f"market {m.symbol}: quote must be the perp collateral")

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "fee_account": address_hex(self.fee_account),
            "assets": [a.to_plain() for a in self.assets],
            "markets": [m.to_plain() for m in self.markets],
        }
        if self.insurance_account is not None:
            plain["insurance_account"] = address_hex(self.insurance_account)
            plain["oracle_members"] = [address_hex(a) for a in self.oracle_members]
            plain["oracle_quorum"] = self.oracle_quorum
        if self.option_rules is not None:
            plain["option_rules"] = self.option_rules.to_plain()
        return plain


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


def _market(raw: object, index: int, what: str = "") -> Market:
    what = what or f"markets[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: expected a table")
    kind = raw.get("kind", "spot")
    if kind not in ("spot", "perp", "option"):
        raise ConfigError(f"{what}: kind must be spot, perp or option, got {kind!r}")
    perp = _perp(raw, what) if kind == "perp" else None
    option = _option(raw, what) if kind == "option" else None
    if (perp is not None or option is not None) and raw.get("base") is not None:
        raise ConfigError(f"{what}: a {kind} market has no base asset")
    auction_blocks = _optional(raw, "auction_blocks", what, 0, 0, MAX_AUCTION_BLOCKS)
    if (perp is not None or option is not None) and auction_blocks:
        raise ConfigError(
            f"{what}: auction_blocks is for spot markets only; a perp market matches "
            "continuously (set auction_blocks = 0 or leave it out)"
        )
    return Market(
        id=_uint(raw, "id", what, 0, U32_MAX),
        symbol=_symbol(raw, what),
        base=None if kind != "spot" else _uint(raw, "base", what, 0, U32_MAX),
        quote=_uint(raw, "quote", what, 0, U32_MAX),
        lot_size=_uint(raw, "lot_size", what, 1),
        tick_size=_uint(raw, "tick_size", what, 1),
        maker_fee_bps=_uint(raw, "maker_fee_bps", what, 0, MAX_FEE_BPS),
        taker_fee_bps=_uint(raw, "taker_fee_bps", what, 0, MAX_FEE_BPS),
        perp=perp,
        auction_blocks=auction_blocks,
        option=option,
    )


def _option(raw: dict[str, Any], what: str) -> OptionParams:
    right = raw.get("right")
    if right not in ("call", "put"):
        raise ConfigError(f"{what}: right must be call or put, got {right!r}")
    return OptionParams(
        underlying=_uint(raw, "underlying", what, 0, U32_MAX),
        strike=_uint(raw, "strike", what, 1),
        expiry_ms=_uint(raw, "expiry_ms", what, 1),
        right=right,
        underlying_lots=_uint(raw, "underlying_lots", what, 1, MAX_UNDERLYING_LOTS),
        vol_e9=_uint(raw, "vol_e9", what, 1, MAX_VOL_E9),
    )


# The terms of a series listed after genesis (docs/MATCHING.md, "Series by admin action"),
# in the order a listing entry carries them (node/listing.py): an option market's genesis
# table without `kind` and `quote` (always the perp collateral).
SERIES_TERMS: Final = (
    "id",
    "symbol",
    "underlying",
    "strike",
    "expiry_ms",
    "right",
    "underlying_lots",
    "vol_e9",
    "tick_size",
    "lot_size",
    "maker_fee_bps",
    "taker_fee_bps",
)


def listed_series(terms: object, quote: int) -> Market:
    """The option market of a listing's terms (a table of exactly SERIES_TERMS) in the
    collateral `quote`; ConfigError unless every term is in range. Each value is checked
    to be a str or an int of at most 64 bits before any message quotes it (an engine
    entry may hold anything)."""
    if type(terms) is not dict or len(terms) != len(SERIES_TERMS):
        raise ConfigError(f"series terms must be a table of exactly {', '.join(SERIES_TERMS)}")
    for key in SERIES_TERMS:
        value = terms.get(key)
        if not (type(value) is str or (type(value) is int and value.bit_length() <= 64)):
            raise ConfigError(f"series terms: {key} must be an integer or a string")
    return _market({**terms, "kind": "option", "quote": quote}, 0, "series")


def _optional(raw: dict[str, Any], key: str, what: str, default: int, low: int, high: int) -> int:
    return _uint(raw, key, what, low, high) if key in raw else default


def _perp(raw: dict[str, Any], what: str) -> PerpParams:
    tiers_raw = raw.get("margin_tiers")
    if not isinstance(tiers_raw, list) or not 0 < len(tiers_raw) <= MAX_MARGIN_TIERS:
        raise ConfigError(f"{what}: margin_tiers must be a list of 1..{MAX_MARGIN_TIERS} tiers")
    tiers: list[tuple[int, int, int]] = []
    for i, tier in enumerate(tiers_raw):
        if (
            not isinstance(tier, list | tuple)
            or len(tier) != 3
            or not all(type(v) is int for v in tier)
        ):
            raise ConfigError(f"{what}: margin_tiers[{i}] must be [max_notional, im_bps, mm_bps]")
        cap, im, mm = tier
        if not (0 < cap <= U64_MAX and 0 < mm < im <= BPS):
            raise ConfigError(
                f"{what}: margin_tiers[{i}] needs 0 < max_notional <= 2^64-1 and "
                "0 < maintenance_bps < initial_bps <= 10000"
            )
        if tiers and not (cap > tiers[-1][0] and im >= tiers[-1][1] and mm >= tiers[-1][2]):
            raise ConfigError(f"{what}: margin tiers must grow in notional and in both rates")
        tiers.append((cap, im, mm))
    max_leverage = _uint(raw, "max_leverage", what, 1, MAX_LEVERAGE)
    if BPS // max_leverage < tiers[0][2] * 2 and max_leverage > 1:
        # At full leverage the initial margin must stay well above maintenance, or a
        # fresh position would be liquidatable by its own fee.
        raise ConfigError(f"{what}: max_leverage leaves less than 2x the maintenance margin")
    return PerpParams(
        margin_tiers=tuple(tiers),
        max_leverage=max_leverage,
        funding_interval_ms=_optional(
            raw, "funding_interval_ms", what, DEFAULT_FUNDING_INTERVAL_MS, 1_000, U32_MAX
        ),
        funding_cap_ppb=_optional(
            raw, "funding_cap_ppb", what, DEFAULT_FUNDING_CAP_PPB, 0, RATE_SCALE
        ),
        interest_ppb=_optional(raw, "interest_ppb", what, DEFAULT_INTEREST_PPB, 0, RATE_SCALE),
        liquidation_fee_bps=_optional(
            raw, "liquidation_fee_bps", what, DEFAULT_LIQUIDATION_FEE_BPS, 0, MAX_FEE_BPS
        ),
        oracle_max_age_ms=_optional(
            raw, "oracle_max_age_ms", what, DEFAULT_ORACLE_MAX_AGE_MS, 1, U32_MAX
        ),
        base_decimals=_optional(raw, "base_decimals", what, 0, 0, 30),
    )
