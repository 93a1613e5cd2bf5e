// Exact decimal conversions (src/units.ts), the same cases as seqnet_sdk's units.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Markets, OffGrid } from "../../src/units.js";

// The localnet's markets: ETH (unit 1e9, 18 decimals), USDC (unit 1, 6 decimals),
// ETH-USDC with a lot of 0.001 ETH and a tick of 0.01 USDC per ETH.
const markets = Markets.fromJson({
  assets: [
    { id: 0, symbol: "ETH", token: "0x0000000000000000000000000000000000000000", unit: 1_000_000_000, decimals: 18 },
    { id: 1, symbol: "USDC", token: "0x5fbdb2315678afecb367f032d93f642f64180aa3", unit: 1, decimals: 6 },
  ],
  markets: [{ id: 0, symbol: "ETH-USDC", base: 0, quote: 1, lot_size: 1_000_000, tick_size: 10, maker_fee_bps: 2, taker_fee_bps: 5 }],
});
const market = markets.market("eth-usdc");

describe("units", () => {
  it("sizes and prices to engine integers and back", () => {
    assert.equal(market.sizeToUnits("0.5"), 500_000_000n);
    assert.equal(market.priceToTicks("3000"), 3_000_000n);
    assert.equal(market.priceToTicks("3000.25"), 3_000_250n);
    assert.equal(market.priceToTicks(3000n), 3_000_000n);
    assert.equal(market.ticksToPrice(3_000_250n), "3000.25");
    assert.equal(market.unitsToSize(500_000_000n), "0.5");
    assert.equal(market.tick(), "0.01");
    assert.equal(market.lot(), "0.001");
    assert.equal(markets.asset("USDC").toUnits("1.5"), 1_500_000n);
    assert.equal(markets.asset(0).toChainAmount("2"), 2n * 10n ** 18n);
    assert.equal(markets.asset("ETH").fromUnits(20_000_000_000n), "20");
  });

  it("refuses what is off the grid, never rounds", () => {
    assert.throws(() => market.sizeToUnits("0.0005"), OffGrid);
    assert.throws(() => market.priceToTicks("3000.001"), OffGrid);
    assert.throws(() => market.priceToTicks("3000.005"), OffGrid);
    assert.throws(() => market.priceToTicks("0"), OffGrid);
    assert.throws(() => markets.asset("USDC").toUnits("-1"), OffGrid);
    assert.throws(() => market.sizeToUnits(0.5), TypeError);
    assert.throws(() => market.sizeToUnits("1,5"), TypeError);
    assert.throws(() => markets.market("BTC-USDC"), /unknown market/);
  });

  it("reads derivative markets, which have no on-chain base asset", () => {
    const derivatives = Markets.fromJson({
      assets: [{ id: 1, symbol: "USDC", token: "0x5fbdb2315678afecb367f032d93f642f64180aa3", unit: 1, decimals: 6 }],
      markets: [
        { id: 7, symbol: "BTC-PERP", kind: "perp", base: null, quote: 1, base_decimals: 8, lot_size: 1, tick_size: 1, maker_fee_bps: 2, taker_fee_bps: 5 },
        { id: 20, symbol: "BTC-20261225-50000-C", kind: "option", base: null, quote: 1, base_decimals: 0, lot_size: 1, tick_size: 1, maker_fee_bps: 2, taker_fee_bps: 5 },
      ],
    });
    assert.equal(derivatives.market("BTC-PERP").base.symbol, "BTC");
    assert.equal(derivatives.market("BTC-PERP").sizeToUnits("0.5"), 50_000_000n);
    const option = derivatives.market(20);
    assert.equal(option.base.symbol, "BTC");
    assert.equal(option.sizeToUnits("3"), 3n); // contracts
    assert.throws(() => option.sizeToUnits("0.5"), OffGrid);
    assert.equal(option.quote.symbol, "USDC");
  });
});
