/**
 * Exact conversion between human decimals and the exchange's integers (PROTOCOL.md §1);
 * the twin of seqnet_sdk/units.py.
 *
 * "3000.5" USDC per ETH and "0.25" ETH become a price in quote engine units per lot (a
 * multiple of the tick) and a size in base engine units (a multiple of the lot). Nothing
 * is rounded: a value off the grid throws `OffGrid`. Amounts are decimal strings or
 * bigints; a JS number is taken only when it is a safe integer (0.1 is not 1/10 in
 * binary), so pass fractions as strings.
 *
 *     engine units of an asset = human amount × 10^(decimals − log10(unit))
 *     price (per lot)          = human price × lot_size × 10^(quote_exp − base_exp)
 */
import { toBigInt } from "./json.js";

export type Numeric = string | bigint | number;

/** A price or size that is not a whole number of ticks or lots (or not positive). */
export class OffGrid extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "OffGrid";
  }
}

/** value = coef × 10^exp */
interface Decimal {
  coef: bigint;
  exp: number;
}

const DECIMAL = /^([+-]?)(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?$/;

function parseDecimal(value: Numeric, what: string): Decimal {
  if (typeof value === "bigint") return { coef: value, exp: 0 };
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new TypeError(`${what} ${value}: pass fractions as decimal strings, not numbers`);
    }
    return { coef: BigInt(value), exp: 0 };
  }
  const m = typeof value === "string" ? DECIMAL.exec(value.trim()) : null;
  if (m === null) throw new TypeError(`${what} ${String(value)} is not a decimal number`);
  const [, sign, whole, fraction, onlyFraction, exponent] = m;
  const digits = (whole ?? "") + (fraction ?? onlyFraction ?? "");
  const coef = BigInt(digits || "0") * (sign === "-" ? -1n : 1n);
  return { coef, exp: Number(exponent ?? 0) - (fraction ?? onlyFraction ?? "").length };
}

/** coef × 10^(exp + shift) × factor as an integer, or null if it is not one. */
function scaled(d: Decimal, shift: number, factor = 1n): bigint | null {
  const e = d.exp + shift;
  const n = d.coef * factor;
  if (e >= 0) return n * 10n ** BigInt(e);
  const div = 10n ** BigInt(-e);
  return n % div === 0n ? n / div : null;
}

/** numerator / denominator as a plain decimal string ("3000", "0.001"); exact or throws. */
function formatRatio(numerator: bigint, denominator: bigint): string {
  const negative = numerator < 0n !== denominator < 0n && numerator !== 0n;
  let n = numerator < 0n ? -numerator : numerator;
  const d = denominator < 0n ? -denominator : denominator;
  let places = 0;
  while (n % d !== 0n) {
    if (++places > 80) throw new RangeError(`${numerator}/${denominator} has no exact decimal`);
    n *= 10n;
  }
  let digits = (n / d).toString().padStart(places + 1, "0");
  if (places > 0) {
    digits = `${digits.slice(0, -places)}.${digits.slice(-places)}`.replace(/\.?0+$/, "");
  }
  return (negative ? "-" : "") + digits;
}

export class AssetInfo {
  constructor(
    readonly id: number,
    readonly symbol: string,
    readonly token: `0x${string}`,
    readonly unit: bigint, // on-chain base units per engine unit
    readonly decimals: number | null, // on-chain decimals, if the node knows them
  ) {}

  /** Decimal places of one engine unit: engine units = human × 10^exponent. */
  get exponent(): number {
    if (this.decimals === null) {
      throw new Error(`${this.symbol}: the node does not know its decimals; use engine units`);
    }
    return this.decimals - (this.unit.toString().length - 1);
  }

  /** Engine units of a human amount (exact, positive). */
  toUnits(amount: Numeric): bigint {
    const units = scaled(parseDecimal(amount, "amount"), this.exponent);
    if (units === null) throw new OffGrid(`${this.symbol} amount ${amount} is finer than the smallest unit`);
    if (units <= 0n) throw new OffGrid(`amount ${amount} must be positive`);
    return units;
  }

  fromUnits(units: Numeric): string {
    const n = toBigInt(units, "units");
    const e = this.exponent;
    return e >= 0 ? formatRatio(n, 10n ** BigInt(e)) : formatRatio(n * 10n ** BigInt(-e), 1n);
  }

  /** On-chain base units (what a deposit sends) of a human amount. */
  toChainAmount(amount: Numeric): bigint {
    return this.toUnits(amount) * this.unit;
  }

  static fromJson(raw: Record<string, unknown>): AssetInfo {
    const decimals = raw["decimals"];
    return new AssetInfo(
      Number(raw["id"]),
      String(raw["symbol"]),
      raw["token"] as `0x${string}`,
      toBigInt(raw["unit"], "unit"),
      decimals === null || decimals === undefined ? null : Number(decimals),
    );
  }
}

export class MarketInfo {
  constructor(
    readonly id: number,
    readonly symbol: string,
    readonly base: AssetInfo,
    readonly quote: AssetInfo,
    readonly lotSize: bigint,
    readonly tickSize: bigint,
    readonly makerFeeBps: number,
    readonly takerFeeBps: number,
  ) {}

  /** Base engine units of a human size; refused unless a positive whole number of lots. */
  sizeToUnits(size: Numeric): bigint {
    const units = this.base.toUnits(size);
    if (units % this.lotSize !== 0n) {
      throw new OffGrid(`size ${size} is not a multiple of the lot ${this.lot()} ${this.base.symbol}`);
    }
    return units;
  }

  /** Quote engine units per lot of a human price; refused unless a positive whole number of ticks. */
  priceToTicks(price: Numeric): bigint {
    const perLot = scaled(parseDecimal(price, "price"), this.quote.exponent - this.base.exponent, this.lotSize);
    if (perLot === null) throw new OffGrid(`${this.symbol} price ${price} is finer than the smallest unit`);
    if (perLot <= 0n) throw new OffGrid(`price ${price} must be positive`);
    if (perLot % this.tickSize !== 0n) throw new OffGrid(`price ${price} is not a multiple of the tick ${this.tick()}`);
    return perLot;
  }

  unitsToSize(units: Numeric): string {
    return this.base.fromUnits(units);
  }

  ticksToPrice(perLot: Numeric): string {
    const e = this.quote.exponent - this.base.exponent;
    const n = toBigInt(perLot, "price");
    return e >= 0
      ? formatRatio(n, this.lotSize * 10n ** BigInt(e))
      : formatRatio(n * 10n ** BigInt(-e), this.lotSize);
  }

  /** The price step in human units. */
  tick(): string {
    return this.ticksToPrice(this.tickSize);
  }

  lot(): string {
    return this.base.fromUnits(this.lotSize);
  }
}

/** What `GET /v1/markets` says, looked up by id or symbol. */
export class Markets {
  constructor(
    readonly assets: Map<number, AssetInfo>,
    readonly markets: Map<number, MarketInfo>,
  ) {}

  static fromJson(raw: unknown): Markets {
    const r = raw as { assets: Array<Record<string, unknown>>; markets: Array<Record<string, unknown>> };
    const assets = new Map(r.assets.map((a) => [Number(a["id"]), AssetInfo.fromJson(a)]));
    const asset = (id: unknown) => {
      const found = assets.get(Number(id));
      if (found === undefined) throw new Error(`market refers to unknown asset ${String(id)}`);
      return found;
    };
    // A perpetual market has no on-chain base asset: its sizes count units of the
    // underlying with `base_decimals` decimals (docs/MATCHING.md, "Perpetual futures").
    // An option series has none either: its sizes count contracts, its prices are per
    // contract (docs/MATCHING.md, "Options").
    const underlying = (m: Record<string, unknown>) =>
      new AssetInfo(
        -1,
        String(m["symbol"]).split("-")[0] ?? "",
        "0x0000000000000000000000000000000000000000",
        1n,
        Number(m["base_decimals"] ?? 0),
      );
    const markets = new Map(
      r.markets.map((m) => [
        Number(m["id"]),
        new MarketInfo(
          Number(m["id"]),
          String(m["symbol"]),
          m["kind"] === "perp" || m["kind"] === "option" ? underlying(m) : asset(m["base"]),
          asset(m["quote"]),
          toBigInt(m["lot_size"], "lot_size"),
          toBigInt(m["tick_size"], "tick_size"),
          Number(m["maker_fee_bps"]),
          Number(m["taker_fee_bps"]),
        ),
      ]),
    );
    return new Markets(assets, markets);
  }

  market(which: number | string): MarketInfo {
    return lookup(this.markets, which, "market");
  }

  asset(which: number | string): AssetInfo {
    return lookup(this.assets, which, "asset");
  }
}

function lookup<T extends { symbol: string }>(table: Map<number, T>, which: number | string, what: string): T {
  const found =
    typeof which === "number"
      ? table.get(which)
      : [...table.values()].find((item) => item.symbol.toUpperCase() === which.toUpperCase());
  if (found === undefined) throw new Error(`unknown ${what} ${JSON.stringify(which)}`);
  return found;
}
