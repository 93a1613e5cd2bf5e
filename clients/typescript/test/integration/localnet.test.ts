// The client against a real local committee: member processes, anvil, the deployed
// settlement contract. tests/integration/test_ts_client.py starts the localnet and runs
// this file with:
//   SEQNET_TS_APIS       comma-separated node API URLs
//   SEQNET_TS_CHAIN_URL  the chain's JSON-RPC URL
//   SEQNET_TS_KEYS       comma-separated private keys of traders funded on chain
// Without them every test here is skipped.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AddressInfo } from "node:net";

import WebSocket, { WebSocketServer } from "ws";

import { Client, Settlement, Stream, parseJson, type Hex, type StreamMessage } from "../../src/index.js";

const APIS = process.env["SEQNET_TS_APIS"]?.split(",") ?? [];
const CHAIN_URL = process.env["SEQNET_TS_CHAIN_URL"] ?? "";
const KEYS = (process.env["SEQNET_TS_KEYS"]?.split(",") ?? []) as Hex[];
const skip = APIS.length < 2 || !CHAIN_URL || KEYS.length < 2 ? "no localnet (run through tests/integration/test_ts_client.py)" : false;
const AGENT_KEY: Hex = `0x${"5e".repeat(32)}`;

async function waitFor<T>(check: () => Promise<T | null | false | undefined>, what: string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A WebSocket proxy in front of a node's /v1/stream that loses the first book delta
 * after `arm()`: a forced gap, on a real connection, without touching the client. */
class LossyProxy {
  private armed = false;
  dropped: bigint[] = [];
  private constructor(private readonly server: WebSocketServer, readonly url: string) {}

  static async start(target: string): Promise<LossyProxy> {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((resolve) => server.once("listening", resolve));
    const proxy = new LossyProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const upstreamBase = target.replace(/^http/, "ws");
    server.on("connection", (client, request) => {
      const upstream = new WebSocket(`${upstreamBase}${request.url}`);
      const pending: string[] = [];
      upstream.on("open", () => pending.splice(0).forEach((m) => upstream.send(m)));
      client.on("message", (data) => {
        const text = data.toString();
        if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
        else pending.push(text);
      });
      upstream.on("message", (data) => {
        const text = data.toString();
        const message = parseJson(text) as StreamMessage;
        if (proxy.armed && message.channel === "book" && message["type"] === "delta") {
          proxy.armed = false;
          proxy.dropped.push(BigInt(message["seq"] as number));
          return;
        }
        client.send(text);
      });
      upstream.on("close", () => client.close());
      client.on("close", () => upstream.close());
      upstream.on("error", () => client.terminate());
    });
    return proxy;
  }

  arm(): void {
    this.armed = true;
  }

  async stop(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

describe("TypeScript client on a localnet", { skip }, () => {
  let alice: Client;
  let bob: Client;

  before(async () => {
    alice = new Client(APIS[0]!, KEYS[0]!);
    bob = new Client(APIS[1]!, KEYS[1]!);
  });

  it("reads the domain from the node and signs for the chain's settlement contract", async () => {
    const domain = await alice.domain();
    const chain = await Settlement.connect({ rpcUrl: CHAIN_URL, signer: KEYS[0]!, domain });
    assert.equal(chain.address, domain.verifyingContract);
    const code = await chain.publicClient.getCode({ address: domain.verifyingContract });
    assert.ok(code && code.length > 2, "the domain's verifying contract is deployed");
    assert.deepEqual(await bob.domain(), domain);
  });

  it("deposits on chain are credited by every node", async () => {
    for (const [client, key] of [[alice, KEYS[0]!], [bob, KEYS[1]!]] as const) {
      const chain = await Settlement.connect({ rpcUrl: CHAIN_URL, signer: key, domain: await client.domain() });
      const markets = await client.markets();
      const eth = await chain.deposit(markets.asset("ETH"), "5");
      const usdc = await chain.deposit(markets.asset("USDC"), "20000");
      assert.ok(usdc.depositId > eth.depositId);
    }
    for (const api of APIS) {
      for (const key of KEYS.slice(0, 2)) {
        const viewer = new Client(api, key);
        await waitFor(async () => {
          const b = await viewer.balances();
          return b["ETH"]?.available === "5" && b["USDC"]?.available === "20000";
        }, `deposits credited on ${api}`);
      }
    }
  });

  it("places, modifies and cancels; every node sees the order", async () => {
    const placed = await alice.place("ETH-USDC", "sell", "0.5", "3500", { tif: "post", cloid: 11 });
    assert.equal(placed.status, "committed", JSON.stringify(placed.raw));
    assert.ok(placed.oid !== undefined);
    for (const api of APIS) {
      const viewer = new Client(api, KEYS[1]!);
      await waitFor(async () => BigInt((await viewer.book("ETH-USDC")).height) >= BigInt(placed.height!), `${api} at the height`);
      const book = await viewer.book("ETH-USDC");
      assert.deepEqual(book.asks, [[3_500_000, 500_000_000, 1]]);
      assert.equal((await viewer.order(placed.oid)).cloid, 11);
    }
    assert.equal((await alice.orderByCloid(11)).oid, placed.oid);
    const modified = await alice.modify("ETH-USDC", placed.oid, "0.4", "3600");
    assert.equal(modified.status, "committed", JSON.stringify(modified.raw));
    assert.equal((await alice.order(placed.oid)).price, 3_600_000);
    assert.equal((await alice.cancel("ETH-USDC", placed.oid)).status, "committed");
    assert.equal((await alice.order(placed.oid)).status, "cancelled");
    assert.deepEqual(await alice.openOrders(), []);

    // A fill between two accounts on two nodes, then the trade and the fills.
    const maker = await alice.place("ETH-USDC", "sell", "0.25", "3100");
    const taker = await bob.place("ETH-USDC", "buy", "0.25", "3100", { tif: "ioc" });
    assert.equal(maker.status, "committed");
    assert.equal(taker.status, "committed", JSON.stringify(taker.raw));
    await waitFor(async () => (await alice.order(maker.oid!)).status === "filled", "maker filled");
    assert.equal((await alice.trades("ETH-USDC"))[0].size, 250_000_000);
    assert.equal((await alice.fills())[0].oid, maker.oid);
    assert.equal((await bob.fills())[0].maker, false);

    // cancel_cloid and cancel_all in one market and in all.
    await alice.place("ETH-USDC", "buy", "0.01", "1000", { cloid: 77 });
    await alice.place("ETH-USDC", "buy", "0.01", "1001");
    assert.equal((await alice.cancelByCloid("ETH-USDC", 77)).status, "committed");
    assert.equal((await alice.openOrders()).length, 1);
    assert.equal((await alice.cancelAll("ETH-USDC")).status, "committed");
    await alice.place("ETH-USDC", "buy", "0.01", "1002");
    assert.equal((await alice.cancelAll()).status, "committed");
    assert.deepEqual(await alice.openOrders(), []);
    assert.ok((await alice.orderHistory()).length >= 5);
  });

  it("approves an agent that trades for the account, then revokes it", async () => {
    const agent = new Client(APIS[0]!, AGENT_KEY, { account: alice.account });
    const approved = await alice.approveAgent(agent.signer, "ts-bot");
    assert.equal(approved.status, "committed", JSON.stringify(approved.raw));
    const placed = await agent.place("ETH-USDC", "buy", "0.01", "1234.5");
    assert.equal(placed.status, "committed", JSON.stringify(placed.raw));
    assert.equal((await agent.order(placed.oid!)).account, alice.account);
    assert.equal((await agent.withdraw("USDC", "1")).code, "signer_not_account");
    assert.equal((await agent.cancelAll()).status, "committed");
    assert.equal((await alice.revokeAgent(agent.signer)).status, "committed");
    assert.equal((await agent.place("ETH-USDC", "buy", "0.01", "1234.5")).code, "unauthorized_signer");
  });

  it("seals orders to the committee key; they execute at their place like plain ones", async () => {
    // `seqnet localnet` on the development chain deals the committee a key (epoch 0).
    const committee = await alice.committeeKey();
    assert.equal(committee.raw["status"], "ready");
    assert.equal(committee.key.keyId, committee.raw["key_id"]);
    assert.equal(committee.key.verificationShares.length, APIS.length);
    assert.deepEqual((await bob.committeeKey()).key, committee.key);

    // An encrypted post-only sell rests; every node shows the order once it is opened.
    const placed = await alice.place("ETH-USDC", "sell", "0.2", "3300", { tif: "post", cloid: 901, encrypted: true });
    assert.equal(placed.status, "committed", JSON.stringify(placed.raw));
    assert.match(placed.id ?? "", /^0x[0-9a-f]{64}$/); // the envelope's id
    const resting = await alice.orderByCloid(901);
    assert.equal(placed.oid, resting.oid); // the answer names the order, as a plain place's does
    assert.equal(resting.status, "open");
    assert.equal(resting.price, 3_300_000);
    for (const api of APIS) {
      const viewer = new Client(api, KEYS[1]!);
      await waitFor(async () => (await viewer.order(resting.oid)).status === "open", `the sealed order on ${api}`);
    }
    // A plain taker on another node fills it.
    const taker = await bob.place("ETH-USDC", "buy", "0.2", "3300", { tif: "ioc" });
    assert.equal(taker.status, "committed", JSON.stringify(taker.raw));
    await waitFor(async () => (await alice.order(resting.oid)).status === "filled", "the sealed order filled");
    assert.equal((await alice.fills())[0].oid, resting.oid);

    // Sealed cancels, and the engine's codes come back through the envelope.
    const bid = await alice.place("ETH-USDC", "buy", "0.01", "1000", { cloid: 902, encrypted: true });
    assert.equal(bid.status, "committed", JSON.stringify(bid.raw));
    const { oid } = await alice.orderByCloid(902);
    assert.equal((await alice.cancelByCloid("ETH-USDC", 902, { encrypted: true })).status, "committed");
    assert.equal((await alice.order(oid)).status, "cancelled");
    const again = await alice.cancel("ETH-USDC", oid, { encrypted: true });
    assert.equal(again.status, "rejected", JSON.stringify(again.raw));
    const tooBig = await alice.place("ETH-USDC", "buy", "1000", "3000", { encrypted: true });
    assert.equal(tooBig.code, "insufficient_balance", JSON.stringify(tooBig.raw));
    assert.deepEqual(await alice.openOrders(), []);
  });

  it("trades BTC-PERP: leverage, a position on every node, margin, prices, streams", async () => {
    // The committee's simulated oracle makes the index fresh a few blocks after start.
    const prices = await waitFor(async () => {
      const found = await alice.prices("BTC-PERP");
      return found.fresh ? found : null;
    }, "a fresh BTC-PERP index");
    assert.equal(prices.observations.length, 4);
    assert.equal((await alice.setLeverage("BTC-PERP", 5)).status, "committed");
    const stream = await alice.stream();
    try {
      await stream.subscribePositions(alice.account);
      await stream.subscribePrices(2);
      const first = await stream.receiveUntil((m) => m.channel === "positions", 10_000);
      assert.equal(first["account"], alice.account);
      // A resting sell at the index and a taker at the same price, on two nodes.
      const ticks = BigInt((await bob.prices("BTC-PERP")).index_price);
      const maker = await bob.place("BTC-PERP", "sell", "0.01", undefined, { priceTicks: ticks, tif: "post" });
      assert.equal(maker.status, "committed", JSON.stringify(maker.raw));
      const taker = await alice.place("BTC-PERP", "buy", "0.01", undefined, { priceTicks: ticks, tif: "ioc" });
      assert.equal(taker.status, "committed", JSON.stringify(taker.raw));
      for (const api of APIS) {
        const viewer = new Client(api, KEYS[1]!);
        const [long] = await waitFor(async () => {
          const found = await viewer.positions(alice.account);
          return found[0]?.size === 1_000_000 ? found : null;
        }, `the position on ${api}`);
        assert.equal(long.side, "long");
        assert.equal(BigInt(long.entry_notional), ticks * 100n);
        assert.equal(long.leverage, 5);
      }
      const summary = await alice.margin();
      assert.ok(summary.equity > 0 && summary.free_collateral > 0);
      assert.ok(summary.positions[0].liquidation_price < summary.positions[0].mark);
      assert.equal((await bob.positions())[0].side, "short");
      const update = await stream.receiveUntil(
        (m) => m.channel === "positions" && (m["positions"] as any[])[0]?.size === 1_000_000,
        10_000,
      );
      assert.equal((update["positions"] as any[])[0].margin_mode, "cross");
      await stream.receiveUntil((m) => m.channel === "prices", 10_000);
      // Margin actions are signed like every trading action; the engine answers with codes.
      assert.equal((await alice.addMargin("BTC-PERP", "10")).code, "not_isolated");
      assert.equal((await alice.removeMargin("BTC-PERP", "10")).code, "not_isolated");
      assert.ok(Array.isArray(await alice.fundingRates("BTC-PERP")));
      assert.deepEqual(await alice.liquidations(), []);
      assert.deepEqual(await alice.liquidations(undefined, { market: "BTC-PERP" }), []);
      // Close both sides again (a reduce-only IOC against a resting buy): flat accounts
      // for the tests after this one.
      const back = await bob.place("BTC-PERP", "buy", "0.01", undefined, { priceTicks: ticks, tif: "post" });
      assert.equal(back.status, "committed", JSON.stringify(back.raw));
      const close = await alice.place("BTC-PERP", "sell", "0.01", undefined, { priceTicks: ticks, tif: "ioc", reduceOnly: true });
      assert.equal(close.status, "committed", JSON.stringify(close.raw));
      assert.equal((await alice.positions())[0].size, 0);
    } finally {
      await stream.close();
    }
  });

  it("streams the book; a lost delta is detected and resynced from a fresh snapshot", async () => {
    const proxy = await LossyProxy.start(APIS[2]!);
    const stream = await Stream.connect(proxy.url);
    try {
      await stream.subscribeBook(0);
      await stream.subscribeAccount(alice.account);
      await stream.receiveUntil((m) => m.channel === "book" && m["type"] === "snapshot", 10_000);
      const first = await alice.place("ETH-USDC", "sell", "0.5", "4001");
      await stream.receiveUntil((m) => m.channel === "book" && BigInt(m["height"] as number) >= BigInt(first.height!), 20_000);
      assert.equal(stream.books.get(0)!.asks.get(4_001_000n), 500_000_000n);

      proxy.arm();
      await alice.place("ETH-USDC", "sell", "0.5", "4002"); // this delta is lost
      await alice.place("ETH-USDC", "sell", "0.5", "4003"); // this one reveals the gap
      const gap = await stream.receiveUntil((m) => m["type"] === "gap", 20_000);
      assert.equal(gap["expected"], proxy.dropped[0]);
      assert.equal(stream.gaps, 1);
      assert.equal(stream.books.get(0)!.stale, true);
      const resync = await stream.receiveUntil((m) => m.channel === "book" && m["type"] === "snapshot", 20_000);
      const book = stream.books.get(0)!;
      assert.equal(book.stale, false);
      assert.ok(BigInt(resync["seq"] as number) >= proxy.dropped[0]!);
      for (const price of [4_001_000n, 4_002_000n, 4_003_000n]) assert.equal(book.asks.get(price), 500_000_000n, `${price}`);

      // The local book equals the node's REST book at the same sequence.
      const rest = await new Client(APIS[2]!, KEYS[1]!).book("ETH-USDC", 100);
      while (book.seq < BigInt(rest.seq)) await stream.receive(20_000);
      if (book.seq === BigInt(rest.seq)) {
        const asks = (rest.asks as Array<[number, number, number]>).map(([p, s]) => [BigInt(p), BigInt(s)]);
        assert.deepEqual(book.levels(100).asks, asks);
      }
      assert.equal((await alice.cancelAll()).status, "committed");
    } finally {
      await stream.close();
      await proxy.stop();
    }
  });

  it("deposit → withdraw → checkpoint → claim on chain", async () => {
    const domain = await bob.domain();
    const chain = await Settlement.connect({ rpcUrl: CHAIN_URL, signer: KEYS[1]!, domain });
    const usdc = (await bob.markets()).asset("USDC");
    const before = (await bob.balances())["USDC"]!.available;

    const withdrawn = await bob.withdraw("USDC", "100");
    assert.equal(withdrawn.status, "committed", JSON.stringify(withdrawn.raw));
    assert.ok(withdrawn.withdrawalId !== undefined && withdrawn.withdrawalId > 0n);
    const after = (await bob.balances())["USDC"]!.available;
    assert.equal(usdc.toUnits(after), usdc.toUnits(before) - 100_000_000n);

    const proof = await bob.withdrawalProof(withdrawn.withdrawalId, { timeoutMs: 120_000 });
    assert.equal(proof.account, bob.account);
    assert.equal(proof.token, usdc.token.toLowerCase());
    assert.equal(proof.amount, 100_000_000n);

    const onChainBefore = await chain.balanceOf(proof.token);
    const claimed = await chain.claim(proof, { timeoutMs: 120_000 });
    assert.equal(claimed.receipt.status, "success");
    assert.equal((await chain.balanceOf(proof.token)) - onChainBefore, proof.amount);
    assert.equal(await chain.isClaimed(proof.withdrawalId), true);
    await assert.rejects(chain.claim(proof), /AlreadyClaimed/);
  });
});
