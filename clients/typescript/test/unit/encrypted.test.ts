// Encrypted intents against PROTOCOL.md §10.7's vector, read from the document itself (as
// tests/fairness/test_envelope.py does): the committee key dealt from its seed, key_id,
// the envelope's bytes and id from the same seeds, its Schnorr proof and the AEAD key
// that opens it; then the refusals (bad keys, sizes, ranges, strict decoding). No network.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { xchacha20poly1305 } from "@noble/ciphers/chacha";
import { secp256k1 } from "@noble/curves/secp256k1";
import { bytesToHex, hexToBytes, type Hex } from "viem";

import {
  decodeEnvelope,
  encryptAction,
  encryptIntent,
  FairnessError,
  hashToNonzeroScalar,
  hashToScalar,
  HEADER_BYTES,
  MAX_ENVELOPE_BYTES,
  MIN_ENVELOPE_BYTES,
  pad,
  parseCommitteeKey,
  SIGNATURE_BYTES,
} from "../../src/encrypted.js";
import { packIntent, signIntent, type Address, type Domain } from "../../src/intents.js";
import { parseJson } from "../../src/json.js";
import { readRepoFile } from "../repo.js";

interface Vector {
  chain_id: number;
  verifying_contract: Address;
  dealer_seed: Hex;
  committee_key: Hex;
  key_id: Hex;
  private_key: Hex;
  signer: Address;
  epoch: number;
  nonce: number;
  action: Record<string, unknown>;
  inner_signature: Hex;
  envelope_seed: Hex;
  envelope: Hex;
  envelope_bytes: number;
  envelope_id: Hex;
  aead_key: Hex;
}

const protocol = readRepoFile("docs/PROTOCOL.md");
const block = /<!-- fairness-vectors:begin -->\s*```json\n([\s\S]*?)```\s*<!-- fairness-vectors:end -->/.exec(protocol);
assert.ok(block?.[1], "PROTOCOL.md has a fairness-vectors block");
const v = parseJson(block[1]) as Vector;
const domain: Domain = { name: "seqnet", version: "1", chainId: BigInt(v.chain_id), verifyingContract: v.verifying_contract };
const key = parseCommitteeKey(v.committee_key);
const seed = hexToBytes(v.envelope_seed);
const Point = secp256k1.ProjectivePoint;

function refuses(code: string, f: () => unknown): void {
  assert.throws(f, (e: unknown) => e instanceof FairnessError && e.code === code, code);
}

async function refusesAsync(code: string, f: () => Promise<unknown>): Promise<void> {
  await assert.rejects(f, (e: unknown) => e instanceof FairnessError && e.code === code, code);
}

function withByte(data: Uint8Array, at: number, value: number): Uint8Array {
  const out = data.slice();
  out[at] = value;
  return out;
}

describe("PROTOCOL.md §10.7 encrypted-intent vector", () => {
  it("parses the committee key: t, n, points, key_id", () => {
    assert.equal(key.threshold, 2);
    assert.equal(key.verificationShares.length, 4);
    assert.equal(bytesToHex(key.bytes), v.committee_key);
    assert.equal(key.keyId, v.key_id);
    assert.deepEqual(parseCommitteeKey(key.bytes), key);
    assert.deepEqual(parseCommitteeKey(v.committee_key.slice(2)), key);
  });

  it("the key is the one dealt from dealer_seed (H_n, points, Feldman shares)", () => {
    const coefficients = [0, 1].map((l) => hashToNonzeroScalar("seqnet/fairness/dealer/v1", hexToBytes(v.dealer_seed), Uint8Array.of(0, l)));
    const commitments = coefficients.map((a) => Point.BASE.multiply(a));
    assert.equal(bytesToHex(key.publicKey), `0x${commitments[0]!.toHex(true)}`);
    key.verificationShares.forEach((share, k) => {
      const expected = commitments[0]!.add(commitments[1]!.multiply(BigInt(k + 1)));
      assert.equal(bytesToHex(share), `0x${expected.toHex(true)}`, `member ${k + 1}`);
    });
  });

  it("signs the inner intent as §4.6's place_limit", async () => {
    const inner = await signIntent(v.private_key, v.signer, v.nonce, v.action, domain);
    assert.equal(inner.signature, v.inner_signature);
  });

  it("seals the same envelope bytes and id from the same seed", async () => {
    const envelope = await encryptAction(v.private_key, v.signer, v.nonce, v.action, domain, key, v.epoch, { seed });
    assert.equal(envelope.hex, v.envelope);
    assert.equal(bytesToHex(envelope.bytes), v.envelope);
    assert.equal(envelope.bytes.length, v.envelope_bytes);
    assert.equal(envelope.id, v.envelope_id);
    const header = decodeEnvelope(envelope.bytes);
    assert.deepEqual(header, { chainId: 31337n, epoch: 1n, account: v.signer, nonce: BigInt(v.nonce), paddedBytes: 256 });
    // encryptIntent on the already signed intent gives the same bytes.
    const inner = await signIntent(v.private_key, v.signer, v.nonce, v.action, domain);
    assert.equal((await encryptIntent(inner, key, v.epoch, domain, v.private_key, { seed })).hex, v.envelope);
  });

  it("its KEM proof verifies and the vector's AEAD key opens it to the padded intent", async () => {
    const bytes = hexToBytes(v.envelope);
    const label = bytes.slice(0, 45);
    const r = Point.fromHex(bytes.slice(45, 78));
    const c = BigInt(bytesToHex(bytes.slice(78, 110)));
    const z = BigInt(bytesToHex(bytes.slice(110, 142)));
    const w = Point.BASE.multiply(z).subtract(r.multiply(c));
    assert.equal(hashToScalar("seqnet/fairness/schnorr/v1", label, r.toRawBytes(true), w.toRawBytes(true)), c);
    const header = bytes.slice(0, HEADER_BYTES);
    const plain = xchacha20poly1305(hexToBytes(v.aead_key), bytes.slice(142, HEADER_BYTES), header).decrypt(
      bytes.slice(HEADER_BYTES, -SIGNATURE_BYTES),
    );
    const inner = await signIntent(v.private_key, v.signer, v.nonce, v.action, domain);
    assert.deepEqual(plain, pad(packIntent(inner)));
  });

  it("a fresh seed each time unless one is given", async () => {
    const a = await encryptAction(v.private_key, v.signer, v.nonce, v.action, domain, key, v.epoch);
    const b = await encryptAction(v.private_key, v.signer, v.nonce, v.action, domain, key, v.epoch);
    assert.notEqual(a.hex, b.hex);
    assert.equal(a.bytes.length, MIN_ENVELOPE_BYTES);
  });
});

describe("encrypted-intent refusals", () => {
  it("bad committee keys", () => {
    const bytes = key.bytes;
    refuses("bad_key", () => parseCommitteeKey(new Uint8Array(0)));
    refuses("bad_key", () => parseCommitteeKey(withByte(bytes, 0, 2))); // version
    refuses("bad_key", () => parseCommitteeKey(bytes.slice(0, -1))); // length
    refuses("bad_key", () => parseCommitteeKey(withByte(bytes, 2, 0))); // t = 0
    refuses("bad_key", () => parseCommitteeKey(withByte(bytes, 2, 5))); // t > n
    refuses("bad_key", () => parseCommitteeKey(Uint8Array.of(1, 0, 0, 0, 0, ...bytes.slice(5, 38)))); // n = 0
    refuses("bad_point", () => parseCommitteeKey(withByte(bytes, 5, 4))); // not compressed
    refuses("bad_point", () => parseCommitteeKey(withByte(bytes, 5 + 33 * 2, 0))); // a share's prefix
    // An x with no point on the curve (x = 5: 125 + 7 is no square mod p).
    const offCurve = bytes.slice();
    offCurve.set(Uint8Array.of(2, ...new Uint8Array(31), 5), 5 + 33);
    refuses("bad_point", () => parseCommitteeKey(offCurve));
    // x ≥ p is no field element.
    const overP = bytes.slice();
    overP.set(Uint8Array.of(2, ...new Uint8Array(32).fill(0xff)), 5);
    refuses("bad_point", () => parseCommitteeKey(overP));
    refuses("bad_type", () => parseCommitteeKey("0xzz"));
    refuses("bad_type", () => parseCommitteeKey("0x123"));
  });

  it("padding: buckets of 256, a packed intent of 1 … 1,024 bytes", () => {
    for (const [length, padded] of [[1, 256], [254, 256], [255, 512], [1022, 1024], [1023, 1280], [1024, 1280]] as const) {
      const out = pad(new Uint8Array(length).fill(7));
      assert.equal(out.length, padded, `${length}`);
      assert.equal((out[0]! << 8) | out[1]!, length);
      assert.ok(out.slice(2 + length).every((b) => b === 0));
    }
    refuses("too_large", () => pad(new Uint8Array(1025)));
    refuses("too_large", () => pad(new Uint8Array(0)));
  });

  it("seeds, epochs and chain ids out of range", async () => {
    const inner = await signIntent(v.private_key, v.signer, v.nonce, v.action, domain);
    await refusesAsync("bad_seed", () => encryptIntent(inner, key, 1, domain, v.private_key, { seed: new Uint8Array(31) }));
    await refusesAsync("out_of_range", () => encryptIntent(inner, key, 2n ** 64n, domain, v.private_key));
    await refusesAsync("out_of_range", () => encryptIntent(inner, key, -1, domain, v.private_key));
    await refusesAsync("out_of_range", () => encryptIntent(inner, key, 1, { ...domain, chainId: 0n }, v.private_key));
  });

  it("strict decoding, as the node's API", () => {
    const raw = hexToBytes(v.envelope);
    refuses("too_small", () => decodeEnvelope(raw.slice(0, -1)));
    refuses("too_large", () => decodeEnvelope(new Uint8Array(MAX_ENVELOPE_BYTES + 1).fill(1)));
    refuses("bad_version", () => decodeEnvelope(withByte(raw, 0, 2)));
    const longer = new Uint8Array(raw.length + 1);
    longer.set(raw.slice(0, -65));
    longer.set(raw.slice(-65), raw.length - 64);
    refuses("bad_length", () => decodeEnvelope(longer));
    const chainZero = raw.slice();
    chainZero.fill(0, 1, 9);
    refuses("out_of_range", () => decodeEnvelope(chainZero));
  });
});
