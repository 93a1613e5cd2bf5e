// The canonical encoder (src/msgpack.ts) against Python msgpack's bytes
// (`msgpack.packb(value, use_bin_type=True)`, the node's encoder), at every boundary
// where @msgpack/msgpack's own choice of form would differ.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Encoder } from "@msgpack/msgpack";
import { toHex } from "viem";

import { packCanonical } from "../../src/msgpack.js";

const hex = (bytes: Uint8Array) => toHex(bytes).slice(2);

// [value, Python's bytes]
const INTEGERS: Array<[string, string]> = [
  ["0", "00"],
  ["1", "01"],
  ["127", "7f"],
  ["128", "cc80"],
  ["255", "ccff"],
  ["256", "cd0100"],
  ["65535", "cdffff"],
  ["65536", "ce00010000"],
  ["4294967295", "ceffffffff"],
  ["4294967296", "cf0000000100000000"],
  ["9007199254740991", "cf001fffffffffffff"],
  ["9007199254740993", "cf0020000000000001"],
  ["18446744073709551615", "cfffffffffffffffff"],
];

describe("canonical msgpack", () => {
  for (const [text, expected] of INTEGERS) {
    it(`integer ${text}`, () => {
      assert.equal(hex(packCanonical(BigInt(text))), expected);
      const n = Number(text);
      if (Number.isSafeInteger(n)) assert.equal(hex(packCanonical(n)), expected);
    });
  }

  it("why the encoder is configured: the library alone is not canonical", () => {
    // Without narrowing, a bigint is always a 9-byte uint64, and with useBigInt64 a
    // number at or above 2^32 becomes a float64.
    const big = new Encoder({ useBigInt64: true });
    assert.equal(hex(big.encode(5n)), "cf0000000000000005");
    assert.equal(hex(big.encode(2 ** 32)), "cb41f0000000000000");
    assert.equal(hex(new Encoder().encode(2 ** 53 + 2)), "cb4340000000000001");
  });

  it("strings: fixstr, str8, str16 (UTF-8 length)", () => {
    for (const [s, prefix] of [["", "a0"], ["a".repeat(31), "bf"], ["a".repeat(32), "d920"], ["a".repeat(255), "d9ff"], ["a".repeat(256), "da0100"], ["é", "a2c3a9"]] as const) {
      assert.ok(hex(packCanonical(s)).startsWith(prefix), `${s.length} chars`);
    }
  });

  it("bytes: bin8, bin16", () => {
    assert.equal(hex(packCanonical(new Uint8Array(0))), "c400");
    assert.ok(hex(packCanonical(new Uint8Array(20))).startsWith("c414"));
    assert.ok(hex(packCanonical(new Uint8Array(255))).startsWith("c4ff"));
    assert.ok(hex(packCanonical(new Uint8Array(256))).startsWith("c50100"));
  });

  it("maps in insertion order, nil, booleans, arrays", () => {
    assert.equal(hex(packCanonical({ a: null, b: true, c: false, z: [1, 2n ** 40n] })), "84a161c0a162c3a163c2a17a9201cf0000010000000000");
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]));
    assert.ok(hex(packCanonical(sixteen)).startsWith("de0010"));
    assert.equal(hex(packCanonical({ z: 1, a: 2 })), "82a17a01a16102");
  });

  it("refuses what has no canonical form", () => {
    assert.throws(() => packCanonical(-1), RangeError);
    assert.throws(() => packCanonical(1.5), RangeError);
    assert.throws(() => packCanonical(2 ** 53), RangeError);
    assert.throws(() => packCanonical(2n ** 64n), RangeError);
    assert.throws(() => packCanonical({ "1": 1 }), TypeError);
  });
});
