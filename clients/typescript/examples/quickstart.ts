// The README's example: deposit, trade, stream, withdraw and claim on a localnet.
//   node dist/examples/quickstart.js http://127.0.0.1:8000 http://127.0.0.1:8545 0x<trader key>
// (tests/integration/test_ts_client.py runs it against a fresh localnet trader.)
import { setTimeout as sleep } from "node:timers/promises";
import { Client, Settlement, type Hex } from "../src/index.js";

const [api = "http://127.0.0.1:8000", rpcUrl = "http://127.0.0.1:8545", key] = process.argv.slice(2);
const client = new Client(api, key as Hex);                          // domain: GET /v1/domain
const chain = await Settlement.connect({ rpcUrl, signer: key as Hex, domain: await client.domain() });
await chain.deposit((await client.markets()).asset("USDC"), "1000");  // on chain, then through consensus
while (Number((await client.balances())["USDC"]?.available ?? 0) < 1000) await sleep(500);
const order = await client.place("ETH-USDC", "buy", "0.1", "2500.5", { tif: "post", cloid: 7 });
console.log(order.status, order.oid, await client.book("ETH-USDC", 5));
const stream = await client.stream();
await stream.subscribeBook(0);                                        // resyncs by itself after a gap
console.log(await stream.receiveUntil((m) => m["type"] === "snapshot", 5000));
await stream.close();
await client.cancelAll();
const w = await client.withdraw("USDC", "100");                       // carries the withdrawal id
const claim = await chain.claim(await client.withdrawalProof(w.withdrawalId!));  // once its checkpoint lands
console.log("claimed", w.withdrawalId, claim.hash);
