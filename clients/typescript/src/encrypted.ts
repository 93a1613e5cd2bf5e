/**
 * Encrypted intents (PROTOCOL.md §10.1–§10.3): sign an action, seal it to the committee's
 * threshold key, sign the envelope. The twin of seqnet_sdk/encrypted.py and
 * node/fairness/envelope.py, byte for byte (test/unit/encrypted.test.ts checks §10.7's
 * vector).
 *
 * A node learns who sent an envelope (to rate-limit it) but not what it says until the
 * block that orders it has committed. `Client.place(..., { encrypted: true })` (and
 * `cancel`, `cancelByCloid`, `submit`) use this; `encryptAction` makes the bytes for
 * `POST /v1/intents/encrypted` yourself.
 *
 * The group is secp256k1 (@noble/curves), hashes SHA-256/SHA-512 (@noble/hashes), the
 * AEAD XChaCha20-Poly1305 (@noble/ciphers): the libraries viem itself is built on. The
 * envelope is signed through viem's EIP-712 path (`signTypedData`), like every intent,
 * so an agent key or any LocalAccount signs it the same way.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha";
import { secp256k1 } from "@noble/curves/secp256k1";
import { sha256, sha512 } from "@noble/hashes/sha2";
import { keccak_256 } from "@noble/hashes/sha3";
import { bytesToBigInt, bytesToHex, concat, hashTypedData, hexToBytes, isHex, numberToBytes, type Hex } from "viem";

import {
  type Action,
  type Address,
  type Domain,
  type IntLike,
  type SignedIntent,
  type Signer,
  packIntent,
  parseAddress,
  signIntent,
  toAccount,
  typedDataDomain,
  U64_MAX,
} from "./intents.js";

const Point = secp256k1.ProjectivePoint;
type Point = InstanceType<typeof Point>;

/** The group order. */
export const N = secp256k1.CURVE.n;
export const POINT_BYTES = 33;
export const SCALAR_BYTES = 32;
export const MAX_MEMBERS = 128;
export const KEY_VERSION = 1;
export const ENVELOPE_VERSION = 1;
export const LABEL_BYTES = 45;
export const KEM_BYTES = POINT_BYTES + 2 * SCALAR_BYTES; // R ‖ Schnorr proof c ‖ z
export const AEAD_NONCE_BYTES = 24;
export const HEADER_BYTES = LABEL_BYTES + KEM_BYTES + AEAD_NONCE_BYTES; // 166
export const TAG_BYTES = 16;
export const SIGNATURE_BYTES = 65;
export const PAD_BYTES = 256;
export const MAX_INTENT_MSGPACK_BYTES = 1024;
export const MAX_PLAINTEXT_BYTES = 1280; // 2 + 1024 rounded up to a multiple of 256
export const MIN_ENVELOPE_BYTES = HEADER_BYTES + PAD_BYTES + TAG_BYTES + SIGNATURE_BYTES; // 503
export const MAX_ENVELOPE_BYTES = HEADER_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES + SIGNATURE_BYTES; // 1527

export const ENVELOPE_TYPES = { EncryptedIntent: [{ name: "hash", type: "bytes32" }] } as const;

const TAGS = {
  keyId: "seqnet/fairness/key-id/v1",
  kemR: "seqnet/fairness/kem-r/v1",
  kemKey: "seqnet/fairness/kem-key/v1",
  schnorr: "seqnet/fairness/schnorr/v1",
  schnorrNonce: "seqnet/fairness/schnorr-nonce/v1",
  envelopeKemSeed: "seqnet/fairness/envelope-kem-seed/v1",
  envelopeNonce: "seqnet/fairness/envelope-nonce/v1",
} as const;

/** Bad input to sealing, or an envelope or key that does not decode; `code` is the
 * node's code for the same fault (PROTOCOL.md §10.3, node/fairness/errors.py). */
export class FairnessError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = "FairnessError";
  }
}

// ---------------------------------------------------------------------------------------
// Group and hashing (§10.1)

// Big-endian unsigned integers of a fixed size (viem refuses a value that does not fit).
const u16 = (value: number) => numberToBytes(value, { size: 2 });
const u32 = (value: number) => numberToBytes(value, { size: 4 });
const u64 = (value: bigint) => numberToBytes(value, { size: 8 });
const readUint = (data: Uint8Array, offset: number, bytes: number) => bytesToBigInt(data.subarray(offset, offset + bytes));

function framed(tag: string, parts: readonly Uint8Array[]): Uint8Array {
  const tagBytes = new TextEncoder().encode(tag);
  const out: Uint8Array[] = [u16(tagBytes.length), tagBytes];
  for (const part of parts) out.push(u32(part.length), part);
  return concat(out);
}

/** H_s: SHA-512 of the framed input as a big-endian integer, mod N. */
export function hashToScalar(tag: string, ...parts: Uint8Array[]): bigint {
  return bytesToBigInt(sha512(framed(tag, parts))) % N;
}

/** H_n: H_s with a u32 counter appended, the first that is not zero. */
export function hashToNonzeroScalar(tag: string, ...parts: Uint8Array[]): bigint {
  for (let counter = 0; ; counter++) {
    const k = hashToScalar(tag, ...parts, u32(counter));
    if (k !== 0n) return k;
  }
}

/** H_b: SHA-256 of the framed input (keys, ids). */
export function hashBytes(tag: string, ...parts: Uint8Array[]): Uint8Array {
  return sha256(framed(tag, parts));
}

function scalarBytes(k: bigint): Uint8Array {
  if (k < 0n || k >= N) throw new Error("scalar out of range"); // a broken invariant
  return numberToBytes(k, { size: SCALAR_BYTES });
}

const encodePoint = (p: Point): Uint8Array => p.toRawBytes(true);

function decodePoint(data: Uint8Array, what: string): Point {
  if (data.length !== POINT_BYTES || (data[0] !== 2 && data[0] !== 3)) {
    throw new FairnessError("bad_point", `${what} must be a 33-byte compressed point`);
  }
  try {
    return Point.fromHex(data); // checks that the point is on the curve
  } catch {
    throw new FairnessError("bad_point", `${what} is not on secp256k1`);
  }
}

function toBytes(input: Uint8Array | string, what: string): Uint8Array {
  if (input instanceof Uint8Array) return input;
  const hex = input.startsWith("0x") ? input : `0x${input}`;
  if (!isHex(hex, { strict: true }) || hex.length % 2 !== 0) throw new FairnessError("bad_type", `${what} must be hex`);
  return hexToBytes(hex);
}

// ---------------------------------------------------------------------------------------
// The committee key (§10.1)

/** A committee key as genesis and `GET /v1/fairness/key` publish it, points checked. */
export interface CommitteeKey {
  /** Decryption shares needed (t). */
  threshold: number;
  /** X = x·G, 33 bytes compressed. */
  publicKey: Uint8Array;
  /** X₁ … Xₙ, member i's verification share. */
  verificationShares: Uint8Array[];
  /** The §10.1 bytes. */
  bytes: Uint8Array;
  /** H_b("seqnet/fairness/key-id/v1", bytes). */
  keyId: Hex;
}

/** Parse a committee key (0x-hex or bytes), refusing it as the node would (`bad_key`,
 * `bad_point`): version 1, 1 … 128 members, 1 ≤ t ≤ n, every point on the curve. */
export function parseCommitteeKey(input: Uint8Array | string): CommitteeKey {
  const data = Uint8Array.from(toBytes(input, "the committee key")); // a copy: the key keeps its bytes
  if (data.length < 5 || data[0] !== KEY_VERSION) throw new FairnessError("bad_key", "not a version 1 threshold key");
  const t = Number(readUint(data, 1, 2));
  const n = Number(readUint(data, 3, 2));
  if (data.length !== 5 + POINT_BYTES * (n + 1)) {
    throw new FairnessError("bad_key", `a key with ${n} members is ${5 + POINT_BYTES * (n + 1)} bytes`);
  }
  if (n < 1 || n > MAX_MEMBERS) throw new FairnessError("bad_key", `a key has 1 … ${MAX_MEMBERS} members, not ${n}`);
  if (t < 1 || t > n) throw new FairnessError("bad_key", `threshold ${t} not in 1 … ${n}`);
  const points: Uint8Array[] = [];
  for (let k = 0; k <= n; k++) {
    const point = data.slice(5 + POINT_BYTES * k, 5 + POINT_BYTES * (k + 1));
    decodePoint(point, k === 0 ? "public key" : `verification share ${k}`);
    points.push(point);
  }
  return {
    threshold: t,
    publicKey: points[0]!,
    verificationShares: points.slice(1),
    bytes: data,
    keyId: bytesToHex(hashBytes(TAGS.keyId, data)),
  };
}

// ---------------------------------------------------------------------------------------
// Key encapsulation (§10.2)

/** (R ‖ Schnorr proof, AEAD key) for `label`; the same seed and label give the same bytes. */
function encapsulate(key: CommitteeKey, label: Uint8Array, seed: Uint8Array): [Uint8Array, Uint8Array] {
  const r = hashToNonzeroScalar(TAGS.kemR, seed, label, key.publicKey);
  const rPoint = Point.BASE.multiply(r);
  const w = hashToNonzeroScalar(TAGS.schnorrNonce, scalarBytes(r), label);
  const c = hashToScalar(TAGS.schnorr, label, encodePoint(rPoint), encodePoint(Point.BASE.multiply(w)));
  const z = (w + c * r) % N;
  const shared = decodePoint(key.publicKey, "public key").multiply(r);
  const aeadKey = hashBytes(TAGS.kemKey, encodePoint(rPoint), encodePoint(shared), key.publicKey);
  return [concat([encodePoint(rPoint), scalarBytes(c), scalarBytes(z)]), aeadKey];
}

// ---------------------------------------------------------------------------------------
// The envelope (§10.3)

/** len(P) as u16 ‖ P ‖ zero bytes up to the next multiple of 256. */
export function pad(packedIntent: Uint8Array): Uint8Array {
  if (packedIntent.length < 1 || packedIntent.length > MAX_INTENT_MSGPACK_BYTES) {
    throw new FairnessError("too_large", `a packed intent is 1 … ${MAX_INTENT_MSGPACK_BYTES} bytes, not ${packedIntent.length}`);
  }
  const body = 2 + packedIntent.length;
  const out = new Uint8Array(Math.ceil(body / PAD_BYTES) * PAD_BYTES);
  out.set(u16(packedIntent.length), 0);
  out.set(packedIntent, 2);
  return out;
}

/** The envelope's EIP-712 typed data: `EncryptedIntent(bytes32 hash)`, hash = keccak of
 * everything but the signature. Its digest is the envelope's id. */
export function envelopeTypedData(unsigned: Uint8Array, domain: Domain) {
  return {
    domain: typedDataDomain(domain),
    types: ENVELOPE_TYPES,
    primaryType: "EncryptedIntent" as const,
    message: { hash: bytesToHex(keccak_256(unsigned)) },
  };
}

/** A decoded envelope header: sizes and ranges checked, signature and proof not. */
export interface EnvelopeHeader {
  chainId: bigint;
  epoch: bigint;
  account: Address;
  nonce: bigint;
  /** The padded plaintext's bucket: 256 · k bytes, k ∈ 1 … 5. */
  paddedBytes: number;
}

/** Strict decoding, as the node's API does first (`too_large`, `too_small`,
 * `bad_version`, `bad_length`, `out_of_range`). */
export function decodeEnvelope(data: Uint8Array): EnvelopeHeader {
  if (data.length > MAX_ENVELOPE_BYTES) throw new FairnessError("too_large", `an envelope is at most ${MAX_ENVELOPE_BYTES} bytes`);
  if (data.length < MIN_ENVELOPE_BYTES) throw new FairnessError("too_small", `an envelope is at least ${MIN_ENVELOPE_BYTES} bytes`);
  if (data[0] !== ENVELOPE_VERSION) throw new FairnessError("bad_version", `envelope version ${data[0]}, expected ${ENVELOPE_VERSION}`);
  const ciphertext = data.length - HEADER_BYTES - SIGNATURE_BYTES;
  if ((ciphertext - TAG_BYTES) % PAD_BYTES !== 0) {
    throw new FairnessError("bad_length", `the ciphertext is 16 + a multiple of ${PAD_BYTES} bytes`);
  }
  const chainId = readUint(data, 1, 8);
  if (chainId === 0n) throw new FairnessError("out_of_range", "chain id 0");
  return {
    chainId,
    epoch: readUint(data, 9, 8),
    account: bytesToHex(data.slice(17, 37)),
    nonce: readUint(data, 37, 8),
    paddedBytes: ciphertext - TAG_BYTES,
  };
}

/** A signed envelope: the bytes to post and its id (the EIP-712 digest, §10.3), which is
 * the id the node answers with and records the outcome under. */
export interface Envelope {
  bytes: Uint8Array;
  hex: Hex;
  id: Hex;
}

export interface SealOptions {
  /** 32 bytes; test vectors only (the same seed gives the same bytes: never reuse one).
   * Default: 32 fresh bytes from `crypto.getRandomValues`. */
  seed?: Uint8Array;
}

function u64Of(value: IntLike, what: string): bigint {
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new FairnessError("out_of_range", `${what} is not exact, pass a bigint`);
  const big = BigInt(value);
  if (big < 0n || big > U64_MAX) throw new FairnessError("out_of_range", `${what} is u64`);
  return big;
}

/** Seal an already signed intent to `committeeKey` for `epoch`; `signer` signs the
 * envelope (the account's key or an agent it approved, as for the intent). */
export async function encryptIntent(
  intent: SignedIntent,
  committeeKey: CommitteeKey,
  epoch: IntLike,
  domain: Domain,
  signer: Signer,
  options: SealOptions = {},
): Promise<Envelope> {
  const seed = options.seed ?? crypto.getRandomValues(new Uint8Array(32));
  if (seed.length !== 32) throw new FairnessError("bad_seed", "the envelope seed is 32 random bytes");
  const chainId = u64Of(domain.chainId, "chain id");
  if (chainId === 0n) throw new FairnessError("out_of_range", "chain id 0");
  const label = concat([
    Uint8Array.of(ENVELOPE_VERSION),
    u64(chainId),
    u64(u64Of(epoch, "epoch")),
    hexToBytes(parseAddress(intent.account, "account")),
    u64(u64Of(intent.nonce, "nonce")),
  ]);
  const [kem, aeadKey] = encapsulate(committeeKey, label, hashBytes(TAGS.envelopeKemSeed, seed));
  const aeadNonce = hashBytes(TAGS.envelopeNonce, seed).slice(0, AEAD_NONCE_BYTES);
  const header = concat([label, kem, aeadNonce]);
  const ciphertext = xchacha20poly1305(aeadKey, aeadNonce, header).encrypt(pad(packIntent(intent)));
  const unsigned = concat([header, ciphertext]);
  const data = envelopeTypedData(unsigned, domain);
  const signature = await toAccount(signer).signTypedData(data);
  if (!isHex(signature) || signature.length !== 2 + 2 * SIGNATURE_BYTES) throw new Error("signer returned a malformed signature");
  const bytes = concat([unsigned, hexToBytes(signature)]);
  decodeEnvelope(bytes); // the bytes we send pass the node's strict decoder
  return { bytes, hex: bytesToHex(bytes), id: hashTypedData(data) };
}

/** Sign `action` as a §4 intent and seal it: the envelope to submit. */
export async function encryptAction(
  signer: Signer,
  account: Address,
  nonce: IntLike,
  action: Action | Record<string, unknown>,
  domain: Domain,
  committeeKey: CommitteeKey,
  epoch: IntLike,
  options: SealOptions = {},
): Promise<Envelope> {
  const intent = await signIntent(signer, account, nonce, action, domain);
  return encryptIntent(intent, committeeKey, epoch, domain, signer, options);
}
