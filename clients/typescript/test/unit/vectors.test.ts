// Every intent test vector of docs/PROTOCOL.md §4.6, read from the document itself (as
// tests/node/test_intents.py does): canonical action bytes, action hash, struct hash,
// digest, signature bytes and the recovered signer; plus the domain separator and the
// §4.2 type hashes. No network.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { hashDomain, keccak256, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import {
  actionHash,
  encodeAction,
  intentDigest,
  intentToJson,
  recoverSigner,
  signIntent,
  structHash,
  validateAction,
  type Address,
  type Domain,
} from "../../src/intents.js";
import { parseJson, stringifyJson } from "../../src/json.js";
import { readRepoFile } from "../repo.js";

interface Vector {
  name: string;
  private_key: `0x${string}`;
  signer: Address;
  intent: { action: Record<string, unknown>; account: Address; nonce: number | bigint; signature: `0x${string}` };
  action_msgpack: `0x${string}`;
  action_hash: `0x${string}` | null;
  struct_hash: `0x${string}`;
  digest: `0x${string}`;
}

const protocol = readRepoFile("docs/PROTOCOL.md");
const block = /<!-- intent-vectors:begin -->\s*```json\n([\s\S]*?)```\s*<!-- intent-vectors:end -->/.exec(protocol);
assert.ok(block?.[1], "PROTOCOL.md has an intent-vectors block");
const doc = parseJson(block[1]) as {
  chain_id: number;
  verifying_contract: Address;
  domain_separator: `0x${string}`;
  vectors: Vector[];
};
// The vectors' own domain (a test fixture). A client takes its domain from GET /v1/domain.
const domain: Domain = { name: "seqnet", version: "1", chainId: BigInt(doc.chain_id), verifyingContract: doc.verifying_contract };

describe("PROTOCOL.md §4.6 intent vectors", () => {
  it("has one vector per action type, and the agent one", () => {
    const names = doc.vectors.map((v) => v.name);
    for (const name of ["place_limit", "place_market", "cancel", "cancel_cloid", "cancel_all", "modify", "withdraw", "approve_agent", "revoke_agent", "place_by_agent"]) {
      assert.ok(names.includes(name), name);
    }
  });

  it("domain separator", () => {
    assert.equal(hashDomain({ domain, types: { EIP712Domain: [
      { name: "name", type: "string" }, { name: "version", type: "string" },
      { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" },
    ] } }), doc.domain_separator);
  });

  it("type hashes of §4.2", () => {
    const table = [...protocol.matchAll(/^\| `(\w+)` \| `([0-9a-f]{64})` \|$/gm)];
    const types: Record<string, string> = {
      EIP712Domain: "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
      Action: "Action(bytes32 hash)",
      Withdraw: "Withdraw(address account,uint32 asset,uint64 amount,uint64 nonce)",
      ApproveAgent: "ApproveAgent(address account,address agent,string name,uint64 nonce)",
      RevokeAgent: "RevokeAgent(address account,address agent,uint64 nonce)",
    };
    const rows = table.filter(([, name]) => name! in types); // §5 lists the settlement's too
    assert.deepEqual(rows.map(([, name]) => name).sort(), Object.keys(types).sort());
    for (const [, name, hash] of rows) {
      assert.equal(keccak256(toHex(types[name!]!)), `0x${hash}`, name);
    }
  });

  for (const v of doc.vectors) {
    describe(v.name, () => {
      const { action, account, nonce } = v.intent;

      it("canonical action bytes", () => {
        assert.equal(toHex(encodeAction(action)), v.action_msgpack);
      });

      it("action hash, struct hash and digest", () => {
        const valid = validateAction(action);
        if (v.action_hash !== null) assert.equal(actionHash(account, nonce, valid), v.action_hash);
        assert.equal(structHash(account, nonce, valid), v.struct_hash);
        assert.equal(intentDigest(account, nonce, valid, domain), v.digest);
      });

      it("signature bytes (viem signTypedData) and signer", async () => {
        assert.equal(privateKeyToAccount(v.private_key).address.toLowerCase(), v.signer);
        const signed = await signIntent(v.private_key, account, nonce, action, domain);
        assert.equal(signed.signature, v.intent.signature);
        assert.equal(signed.id, v.digest);
        assert.equal(await recoverSigner(signed, domain), v.signer);
      });

      it("JSON wire form", async () => {
        const signed = await signIntent(v.private_key, account, nonce, action, domain);
        assert.deepEqual(parseJson(stringifyJson(intentToJson(signed))), v.intent);
      });
    });
  }
});
