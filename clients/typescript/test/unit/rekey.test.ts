// The client across a re-key: envelopes sealed to the key it read before the committee
// made a new one are refused `wrong_epoch` at intake (none admitted); it reads the key
// again and seals those once more to the new key. Against a stand-in API (fetch stubbed,
// no network) that judges envelopes by their epoch; tests/fairness/test_sdk_rekey.py does
// the same for the Python SDK.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import { secp256k1 } from "@noble/curves/secp256k1";
import { bytesToHex, concat, hexToBytes, numberToBytes, type Hex } from "viem";

import { Client } from "../../src/client.js";
import { decodeEnvelope, parseCommitteeKey } from "../../src/encrypted.js";
import { placeAction } from "../../src/intents.js";

const KEY = `0x${"0".repeat(61)}5ec` as Hex;
const CHAIN_ID = 31337;

/** A well-formed committee key (n = 4, t = 2) whose points are k·G for k from `base`. */
function committeeKey(base: bigint): Hex {
  const point = (k: bigint) => secp256k1.ProjectivePoint.BASE.multiply(k).toRawBytes(true);
  const shares = [1n, 2n, 3n, 4n].map((i) => point(base + i));
  return bytesToHex(concat([new Uint8Array([1]), numberToBytes(2, { size: 2 }), numberToBytes(4, { size: 2 }), point(base), ...shares]));
}
const KEYS = [committeeKey(100n), committeeKey(200n)];

class StandInApi {
  epoch = 0;
  refusedEpochs = new Set<number>(); // refused even when current (a node mid-re-key)
  posted: number[][] = [];

  fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const json = (body: unknown) => new Response(JSON.stringify(body), { status: 200 });
    if (url.pathname === "/v1/domain") {
      return json({ name: "seqnet", version: "1", chain_id: CHAIN_ID, verifying_contract: `0x${"11".repeat(20)}` });
    }
    if (url.pathname === "/v1/fairness/key") {
      const key = KEYS[this.epoch]!;
      return json({ status: "ready", epoch: this.epoch, committee_key: key, key_id: parseCommitteeKey(key).keyId });
    }
    assert.equal(url.pathname, "/v1/intents/encrypted");
    const envelopes = (JSON.parse(String(init?.body)) as { envelopes: Hex[] }).envelopes;
    const epochs = envelopes.map((e) => Number(decodeEnvelope(hexToBytes(e)).epoch));
    this.posted.push(epochs);
    const results = epochs.map((epoch) =>
      epoch !== this.epoch || this.refusedEpochs.has(epoch)
        ? { id: null, status: "rejected", code: "wrong_epoch", message: "old key" }
        : { id: `0x${"00".repeat(32)}`, status: "committed", height: 9, oid: 1 },
    );
    return json({ results });
  };
}

describe("encrypted intents across a re-key", () => {
  const realFetch = globalThis.fetch;
  let api: StandInApi;
  beforeEach(() => {
    api = new StandInApi();
    globalThis.fetch = api.fetch as typeof fetch;
  });
  afterEach(() => {
    globalThis.fetch = realFetch;
  });

  it("seals envelopes refused for an old key again to the new one", async () => {
    const client = new Client("http://stand-in", KEY);
    assert.equal((await client.committeeKey()).epoch, 0n);
    api.epoch = 1; // the committee re-keys; the client still holds epoch 0's key
    const actions = [placeAction(0, "buy", 3_000_000n, 1_000_000n), placeAction(0, "sell", 3_100_000n, 1n)];
    const results = await client.submit(actions, { encrypted: true });
    assert.deepEqual(
      results.map((r) => [r.status, r.oid]),
      [
        ["committed", 1],
        ["committed", 1],
      ],
    );
    assert.deepEqual(api.posted, [
      [0, 0],
      [1, 1],
    ]);
    await client.submit(actions.slice(0, 1), { encrypted: true });
    assert.deepEqual(api.posted.at(-1), [1]); // the new key is kept
  });

  it("keeps the refusal, posting once, when the key read again is the same", async () => {
    const client = new Client("http://stand-in", KEY);
    api.refusedEpochs.add(0); // the key route still names epoch 0, intake refuses it
    const [result] = await client.submit([placeAction(0, "buy", 3_000_000n, 1_000_000n)], { encrypted: true });
    assert.equal(result!.code, "wrong_epoch");
    assert.deepEqual(api.posted, [[0]]);
  });
});
