/**
 * The canonical msgpack of PROTOCOL.md §4.1, made with @msgpack/msgpack.
 *
 * The canonical form is what Python's msgpack writes (`packb(obj, use_bin_type=True)`):
 * maps with their keys in insertion order, unsigned integers in their smallest form
 * (positive fixint, uint8, uint16, uint32, uint64), `nil`, `true`/`false`, UTF-8 `str`
 * (fixstr, str8, …) and `bin` for bytes. @msgpack/msgpack 3.1 writes all of that itself
 * except for integers at or above 2^32:
 *
 * - a JS `number` there is written as uint64 without `useBigInt64`, but as a float64
 *   with it, and a number above 2^53 is not exact to begin with;
 * - a `bigint` (with `useBigInt64`) is always written as a 9-byte uint64, even 5.
 *
 * So the encoder runs with `useBigInt64: true`, and every integer is first narrowed:
 * below 2^32 it is passed as a `number` (smallest form), from 2^32 on as a `bigint`
 * (uint64 is then the smallest form). Map keys keep insertion order (`sortKeys: false`);
 * a key that looks like an array index would be moved first by JavaScript itself, so
 * such keys are refused. test/unit/msgpack.test.ts checks the boundaries byte for byte
 * against Python's output.
 */
import { Encoder } from "@msgpack/msgpack";

const U32_LIMIT = 2n ** 32n;
const U64_MAX = 2n ** 64n - 1n;

const encoder = new Encoder({
  useBigInt64: true,
  sortKeys: false,
  ignoreUndefined: false,
  forceFloat32: false,
  forceIntegerToFloat: false,
});

/** A value the canonical encoder takes: unsigned integers, strings, booleans, null,
 * bytes, arrays and plain objects of those. */
export type Packable =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly Packable[]
  | { readonly [key: string]: Packable };

function narrow(value: Packable, path: string): unknown {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (value instanceof Uint8Array) return value;
  if (typeof value === "number" || typeof value === "bigint") {
    if (typeof value === "number" && !Number.isSafeInteger(value)) {
      throw new RangeError(`${path}: ${value} is not a safe integer (pass a bigint)`);
    }
    const big = BigInt(value);
    if (big < 0n || big > U64_MAX) throw new RangeError(`${path}: ${value} is not a u64`);
    return big < U32_LIMIT ? Number(big) : big;
  }
  if (Array.isArray(value)) return value.map((item, i) => narrow(item, `${path}[${i}]`));
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (/^(0|[1-9][0-9]*)$/.test(key)) throw new TypeError(`${path}: index-like key ${key}`);
      out[key] = narrow(item as Packable, `${path}.${key}`);
    }
    return out;
  }
  throw new TypeError(`${path}: cannot encode ${typeof value}`);
}

/** Canonical msgpack bytes of `value`. */
export function packCanonical(value: Packable): Uint8Array {
  return encoder.encode(narrow(value, "value"));
}
