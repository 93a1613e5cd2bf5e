/**
 * JSON that keeps every integer exact (PROTOCOL.md §4.5, API.md "Conventions").
 *
 * u64 values (prices, sizes, order ids, nonces, amounts) may exceed 2^53, which a plain
 * `JSON.parse` silently rounds. Here an integer that is a safe JS number stays a
 * `number`, a larger one becomes a `bigint`; `bigint`s are written as JSON numbers.
 * Floats are written as the node would refuse them (it accepts integers only), so
 * `stringify` refuses a non-integer number instead of sending one.
 */
import { isInteger, parse as losslessParse, stringify as losslessStringify } from "lossless-json";

/** An integer from the API: a `number` when it is safe, else a `bigint`. */
export type Int = number | bigint;

function parseNumber(text: string): number | bigint {
  if (isInteger(text)) {
    const value = Number(text);
    return Number.isSafeInteger(value) ? value : BigInt(text);
  }
  return Number(text);
}

export function parseJson(text: string): unknown {
  return losslessParse(text, null, parseNumber);
}

export function stringifyJson(value: unknown): string {
  const text = losslessStringify(value, (_key, v: unknown) => {
    if (typeof v === "number" && !Number.isInteger(v)) {
      throw new TypeError(`refusing to send the non-integer ${v}: seqnet takes integers only`);
    }
    return v;
  });
  if (text === undefined) throw new TypeError("value cannot be written as JSON");
  return text;
}

/** `BigInt(x)` of an API integer, refusing anything else. */
export function toBigInt(value: unknown, what = "value"): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^[0-9]+$/.test(value)) return BigInt(value);
  throw new TypeError(`${what} is not an integer: ${String(value)}`);
}
