// A series the committee lists after genesis (docs/MATCHING.md, "Series by admin action"):
// the client's cached market list lacks it, so a look-up by its symbol or id refreshes the
// list once from GET /v1/markets.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";

import { Client } from "../../src/client.js";

const usdc = { id: 1, symbol: "USDC", token: "0x5fbdb2315678afecb367f032d93f642f64180aa3", unit: 1, decimals: 6 };
const perp = { id: 2, symbol: "BTC-PERP", kind: "perp", quote: 1, lot_size: 10_000, tick_size: 10,
  maker_fee_bps: 2, taker_fee_bps: 5, base_decimals: 8 };
const listed = { id: 30, symbol: "BTC-NEW-99000-P", kind: "option", quote: 1, lot_size: 1, tick_size: 100_000,
  maker_fee_bps: 2, taker_fee_bps: 5, underlying: 2, strike: 99_000_000_000, expiry_ms: 1_900_000_000_000,
  right: "put", underlying_lots: 10_000, vol_e9: 650_000_000 };

const realFetch = globalThis.fetch;

function serve(lists: unknown[][]): string[] {
  const seen: string[] = [];
  globalThis.fetch = (async (url: string | URL) => {
    seen.push(String(url));
    const markets = lists[Math.min(seen.length - 1, lists.length - 1)];
    return new Response(JSON.stringify({ assets: [usdc], markets }), { status: 200 });
  }) as typeof fetch;
  return seen;
}

describe("listed series", () => {
  afterEach(() => {
    globalThis.fetch = realFetch;
  });

  it("an unknown market refreshes the cached list once", async () => {
    const seen = serve([[perp], [perp, listed]]);
    const client = new Client("http://node", `0x${"11".repeat(32)}`);
    assert.equal((await client.market("BTC-PERP")).id, 2);
    assert.equal(seen.length, 1);
    const info = await client.market("btc-new-99000-p");
    assert.equal(info.id, 30);
    assert.equal(info.tick(), "0.1");
    assert.equal(seen.length, 2);
    assert.equal((await client.market(30)).symbol, "BTC-NEW-99000-P");
    assert.equal(seen.length, 2); // cached now
  });

  it("a market that is still unknown after the refresh is an error", async () => {
    serve([[perp]]);
    const client = new Client("http://node", `0x${"11".repeat(32)}`);
    await assert.rejects(client.market("NOPE"));
  });
});
