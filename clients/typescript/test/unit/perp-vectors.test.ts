// The perpetual actions (set_leverage, add_margin, remove_margin) signed exactly as the
// Python SDK signs them: the vectors in perp-vectors.json are made by node/intents.py
// (tests/api/test_perp_vectors.py keeps them current); here viem must give the same
// canonical bytes, hashes, digest, signature and signer. No network.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  actionHash,
  encodeAction,
  intentDigest,
  intentToJson,
  recoverSigner,
  signIntent,
  structHash,
  TRADING_ACTIONS,
  validateAction,
  IntentError,
  type Address,
  type Domain,
} from "../../src/intents.js";
import { parseJson, stringifyJson } from "../../src/json.js";
import { toHex } from "viem";
import { readRepoFile } from "../repo.js";

interface Vector {
  name: string;
  private_key: `0x${string}`;
  signer: Address;
  intent: { action: Record<string, unknown>; account: Address; nonce: number | bigint; signature: `0x${string}` };
  action_msgpack: `0x${string}`;
  action_hash: `0x${string}`;
  struct_hash: `0x${string}`;
  digest: `0x${string}`;
}

const doc = parseJson(readRepoFile("clients/typescript/test/unit/perp-vectors.json")) as {
  chain_id: number;
  verifying_contract: Address;
  vectors: Vector[];
};
const domain: Domain = { name: "seqnet", version: "1", chainId: BigInt(doc.chain_id), verifyingContract: doc.verifying_contract };

describe("perpetual action vectors (Python SDK signatures)", () => {
  it("covers the three perp actions, and an agent", () => {
    const types = new Set(doc.vectors.map((v) => v.intent.action["type"]));
    assert.deepEqual([...types].sort(), ["add_margin", "remove_margin", "set_leverage"]);
    assert.ok(doc.vectors.some((v) => v.name.endsWith("_by_agent")));
    for (const t of types) assert.ok(TRADING_ACTIONS.has(t as never), `${String(t)} is a trading action`);
  });

  for (const v of doc.vectors) {
    describe(v.name, () => {
      const { action, account, nonce } = v.intent;
      it("bytes, hashes and digest", () => {
        const valid = validateAction(action);
        assert.equal(toHex(encodeAction(action)), v.action_msgpack);
        assert.equal(actionHash(account, nonce, valid), v.action_hash);
        assert.equal(structHash(account, nonce, valid), v.struct_hash);
        assert.equal(intentDigest(account, nonce, valid, domain), v.digest);
      });
      it("signature, signer and JSON wire form", async () => {
        const signed = await signIntent(v.private_key, account, nonce, action, domain);
        assert.equal(signed.signature, v.intent.signature);
        assert.equal(signed.id, v.digest);
        assert.equal(await recoverSigner(signed, domain), v.signer);
        assert.deepEqual(parseJson(stringifyJson(intentToJson(signed))), v.intent);
      });
    });
  }

  it("refuses malformed perp actions with the node's codes", () => {
    const code = (input: unknown) => {
      try {
        validateAction(input);
      } catch (e) {
        return (e as IntentError).code;
      }
      return "ok";
    };
    assert.equal(code({ type: "set_leverage", market: 2, leverage: 5, isolated: "yes" }), "bad_type");
    assert.equal(code({ type: "set_leverage", market: 2, leverage: 2 ** 32, isolated: false }), "out_of_range");
    assert.equal(code({ type: "add_margin", market: 2 }), "missing_field");
    assert.equal(code({ type: "remove_margin", market: 2, amount: -1n }), "out_of_range");
    assert.equal(code({ type: "add_margin", market: 2, amount: 1, extra: 0 }), "unknown_field");
  });
});
