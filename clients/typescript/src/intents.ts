/**
 * Signed trader intents (PROTOCOL.md §2 and §4): the action schema, the canonical action
 * bytes, the EIP-712 typed data a wallet signs, and the JSON and msgpack wire forms.
 *
 * The TypeScript twin of node/intents.py: the same schema, field checks and error codes,
 * so that an action this module accepts is one the node accepts. u32 fields are
 * `number`s, u64 fields `bigint`s (inputs may be either), addresses lower-case 0x-hex.
 * Signing goes through viem's standard EIP-712 path (`signTypedData`), never through a
 * hand-made digest, so any EIP-712 wallet produces the same signature.
 */
import {
  bytesToHex,
  concat,
  hashStruct,
  hashTypedData,
  hexToBytes,
  isHex,
  keccak256,
  numberToBytes,
  recoverTypedDataAddress,
  type Hex,
  type LocalAccount,
  type TypedDataDomain,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { packCanonical, type Packable } from "./msgpack.js";

export type Address = `0x${string}`;
export type Side = "buy" | "sell";
export type OrderKind = "limit" | "market";
export type Tif = "gtc" | "ioc" | "fok" | "post";
/** An integer argument: a JS number (safe integers only) or a bigint. */
export type IntLike = number | bigint;

export const U32_MAX = 2 ** 32 - 1;
export const U64_MAX = 2n ** 64n - 1n;
export const MAX_AGENT_NAME_BYTES = 32;
export const MAX_INTENT_JSON_BYTES = 2048;

export interface PlaceAction {
  type: "place";
  market: number;
  side: Side;
  kind: OrderKind;
  price: bigint;
  size: bigint;
  tif: Tif;
  reduce_only: boolean;
  cloid: bigint | null;
  expires_ms: bigint | null;
}
export interface CancelAction { type: "cancel"; market: number; oid: bigint }
export interface CancelCloidAction { type: "cancel_cloid"; market: number; cloid: bigint }
export interface CancelAllAction { type: "cancel_all"; market: number | null }
export interface ModifyAction { type: "modify"; market: number; oid: bigint; price: bigint; size: bigint }
export interface SetLeverageAction { type: "set_leverage"; market: number; leverage: number; isolated: boolean }
export interface AddMarginAction { type: "add_margin"; market: number; amount: bigint }
export interface RemoveMarginAction { type: "remove_margin"; market: number; amount: bigint }
export interface SetOptionMarginAction { type: "set_option_margin"; mode: "portfolio" | "standard" }
export interface WithdrawAction { type: "withdraw"; asset: number; amount: bigint }
export interface ApproveAgentAction { type: "approve_agent"; agent: Address; name: string }
export interface RevokeAgentAction { type: "revoke_agent"; agent: Address }

/** A validated §2 action: every key present, in canonical order. */
export type Action =
  | PlaceAction
  | CancelAction
  | CancelCloidAction
  | CancelAllAction
  | ModifyAction
  | SetLeverageAction
  | AddMarginAction
  | RemoveMarginAction
  | SetOptionMarginAction
  | WithdrawAction
  | ApproveAgentAction
  | RevokeAgentAction;
export type ActionType = Action["type"];

export const TRADING_ACTIONS: ReadonlySet<ActionType> = new Set([
  "place",
  "cancel",
  "cancel_cloid",
  "cancel_all",
  "modify",
  // Perpetual futures (PROTOCOL.md §2): trading actions, signed as `Action`, agents may.
  "set_leverage",
  "add_margin",
  "remove_margin",
  // Options (PROTOCOL.md §2): the account's option margin mode.
  "set_option_margin",
]);
/** Actions only the account itself may sign (never an agent). */
export const ACCOUNT_ONLY_ACTIONS: ReadonlySet<ActionType> = new Set([
  "withdraw",
  "approve_agent",
  "revoke_agent",
]);

/** A malformed action or intent; `code` is the node's code for the same fault (§4.5). */
export class IntentError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(`${code}: ${message}`);
    this.name = "IntentError";
  }
}

// ---------------------------------------------------------------------------------------
// Schema (PROTOCOL.md §2): type -> fields after "type", in canonical order, with checks.

type Check = (value: unknown, name: string) => unknown;

function unsigned(max: bigint, asNumber: boolean): Check {
  return (value, name) => {
    if (typeof value !== "bigint" && !(typeof value === "number" && Number.isInteger(value))) {
      throw new IntentError("bad_type", `${name} must be an unsigned integer`, name);
    }
    if (typeof value === "number" && !Number.isSafeInteger(value)) {
      throw new IntentError("bad_type", `${name}: ${value} is not exact, pass a bigint`, name);
    }
    const big = BigInt(value);
    if (big < 0n || big > max) {
      throw new IntentError("out_of_range", `${name} out of range 0..${max}`, name);
    }
    return asNumber ? Number(big) : big;
  };
}

const u32 = unsigned(BigInt(U32_MAX), true);
const u64 = unsigned(U64_MAX, false);

function optional(inner: Check): Check {
  return (value, name) => (value === null ? null : inner(value, name));
}

function oneOf(...allowed: string[]): Check {
  return (value, name) => {
    if (typeof value !== "string" || !allowed.includes(value)) {
      throw new IntentError("bad_value", `${name} must be one of ${allowed.join(", ")}`, name);
    }
    return value;
  };
}

const bool: Check = (value, name) => {
  if (typeof value !== "boolean") {
    throw new IntentError("bad_type", `${name} must be a boolean`, name);
  }
  return value;
};

export function parseAddress(value: unknown, name = "address"): Address {
  if (value instanceof Uint8Array && value.length === 20) return bytesToHex(value);
  if (typeof value !== "string" || !/^0[xX][0-9a-fA-F]{40}$/.test(value)) {
    throw new IntentError("bad_address", `${name} must be 0x + 40 hex digits`, name);
  }
  return `0x${value.slice(2).toLowerCase()}`;
}

const address: Check = (value, name) => parseAddress(value, name);

const agentName: Check = (value, name) => {
  if (typeof value !== "string") throw new IntentError("bad_type", `${name} must be a string`, name);
  if (new TextEncoder().encode(value).length > MAX_AGENT_NAME_BYTES) {
    throw new IntentError("out_of_range", `${name} longer than ${MAX_AGENT_NAME_BYTES} bytes`, name);
  }
  return value;
};

const SCHEMA: Record<ActionType, ReadonlyArray<readonly [string, Check]>> = {
  place: [
    ["market", u32],
    ["side", oneOf("buy", "sell")],
    ["kind", oneOf("limit", "market")],
    ["price", u64],
    ["size", u64],
    ["tif", oneOf("gtc", "ioc", "fok", "post")],
    ["reduce_only", bool],
    ["cloid", optional(u64)],
    ["expires_ms", optional(u64)],
  ],
  cancel: [["market", u32], ["oid", u64]],
  cancel_cloid: [["market", u32], ["cloid", u64]],
  cancel_all: [["market", optional(u32)]],
  modify: [["market", u32], ["oid", u64], ["price", u64], ["size", u64]],
  set_leverage: [["market", u32], ["leverage", u32], ["isolated", bool]],
  add_margin: [["market", u32], ["amount", u64]],
  remove_margin: [["market", u32], ["amount", u64]],
  set_option_margin: [["mode", oneOf("portfolio", "standard")]],
  withdraw: [["asset", u32], ["amount", u64]],
  approve_agent: [["agent", address], ["name", agentName]],
  revoke_agent: [["agent", address]],
};

/** Check an action (any key order, ints as numbers or bigints, addresses in any case)
 * and return it in canonical form. Throws `IntentError` with the node's code. */
export function validateAction(input: unknown): Action {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new IntentError("bad_type", "action must be a map", "action");
  }
  const obj = input as Record<string, unknown>;
  const kind = obj["type"];
  const fields = typeof kind === "string" && Object.hasOwn(SCHEMA, kind) ? SCHEMA[kind as ActionType] : undefined;
  if (fields === undefined) {
    throw new IntentError("unknown_action", `unknown action type ${JSON.stringify(kind)}`, "type");
  }
  const known = new Set(["type", ...fields.map(([name]) => name)]);
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw new IntentError("unknown_field", `unknown field ${JSON.stringify(key)}`, key);
  }
  const action: Record<string, unknown> = { type: kind };
  for (const [name, check] of fields) {
    if (obj[name] === undefined) {
      throw new IntentError("missing_field", `${kind} needs field ${JSON.stringify(name)}`, name);
    }
    action[name] = check(obj[name], name);
  }
  if (action["type"] === "place" && action["kind"] === "market" && !["ioc", "fok"].includes(action["tif"] as string)) {
    throw new IntentError("bad_value", "a market order's tif must be ioc or fok", "tif");
  }
  return action as unknown as Action;
}

/** A `place` action with every key; `tif` defaults to gtc (limit) or ioc (market). */
export function placeAction(
  market: number,
  side: Side,
  price: IntLike,
  size: IntLike,
  options: { kind?: OrderKind; tif?: Tif; reduceOnly?: boolean; cloid?: IntLike | null; expiresMs?: IntLike | null } = {},
): PlaceAction {
  const kind = options.kind ?? "limit";
  return validateAction({
    type: "place",
    market,
    side,
    kind,
    price,
    size,
    tif: options.tif ?? (kind === "limit" ? "gtc" : "ioc"),
    reduce_only: options.reduceOnly ?? false,
    cloid: options.cloid ?? null,
    expires_ms: options.expiresMs ?? null,
  }) as PlaceAction;
}

function toPackable(action: Action): Packable {
  const out: Record<string, Packable> = {};
  for (const [key, value] of Object.entries(action)) {
    // Addresses travel as 20-byte `bin` (§4.1); every other value as it is.
    out[key] = key === "agent" ? hexToBytes(value as Hex) : (value as Packable);
  }
  return out;
}

/** The canonical msgpack bytes of an action (§4.1). */
export function encodeAction(action: Action | Record<string, unknown>): Uint8Array {
  return packCanonical(toPackable(validateAction(action)));
}

// ---------------------------------------------------------------------------------------
// EIP-712 (§4.2). The domain comes from the node (`GET /v1/domain`), never from constants.

export interface Domain {
  name: string;
  version: string;
  chainId: bigint;
  verifyingContract: Address;
}

/** The domain as `GET /v1/domain` answers it: `{name, version, chain_id, verifying_contract}`. */
export function domainFromJson(raw: unknown): Domain {
  const r = raw as Record<string, unknown>;
  if (typeof r?.["name"] !== "string" || typeof r["version"] !== "string") {
    throw new TypeError("a domain has a name and a version");
  }
  const chainId = r["chain_id"];
  if (typeof chainId !== "number" && typeof chainId !== "bigint") throw new TypeError("domain chain_id");
  return {
    name: r["name"],
    version: r["version"],
    chainId: BigInt(chainId),
    verifyingContract: parseAddress(r["verifying_contract"], "verifying_contract"),
  };
}

export const EIP712_TYPES = {
  Action: [{ name: "hash", type: "bytes32" }],
  Withdraw: [
    { name: "account", type: "address" },
    { name: "asset", type: "uint32" },
    { name: "amount", type: "uint64" },
    { name: "nonce", type: "uint64" },
  ],
  ApproveAgent: [
    { name: "account", type: "address" },
    { name: "agent", type: "address" },
    { name: "name", type: "string" },
    { name: "nonce", type: "uint64" },
  ],
  RevokeAgent: [
    { name: "account", type: "address" },
    { name: "agent", type: "address" },
    { name: "nonce", type: "uint64" },
  ],
} as const;

export interface TypedData {
  domain: TypedDataDomain;
  types: Record<string, ReadonlyArray<{ name: string; type: string }>>;
  primaryType: "Action" | "Withdraw" | "ApproveAgent" | "RevokeAgent";
  message: Record<string, unknown>;
}

/** The domain as viem's typed-data calls take it. */
export function typedDataDomain(domain: Domain): TypedDataDomain {
  return { name: domain.name, version: domain.version, chainId: domain.chainId, verifyingContract: domain.verifyingContract };
}

/** keccak256(msgpack(action) ‖ nonce as 8 bytes big-endian ‖ account): the `hash` of a
 * trading action's `Action(bytes32 hash)` struct. */
export function actionHash(account: Address, nonce: IntLike, action: Action): Hex {
  return keccak256(
    concat([encodeAction(action), numberToBytes(BigInt(nonce), { size: 8 }), hexToBytes(parseAddress(account))]),
  );
}

/** The EIP-712 typed data (`eth_signTypedData_v4` input) of an intent. */
export function typedData(account: Address, nonce: IntLike, action: Action, domain: Domain): TypedData {
  const valid = validateAction(action);
  const acct = parseAddress(account, "account");
  const n = BigInt(nonce);
  const base = { domain: typedDataDomain(domain) };
  switch (valid.type) {
    case "withdraw":
      return { ...base, types: { Withdraw: EIP712_TYPES.Withdraw }, primaryType: "Withdraw",
        message: { account: acct, asset: valid.asset, amount: valid.amount, nonce: n } };
    case "approve_agent":
      return { ...base, types: { ApproveAgent: EIP712_TYPES.ApproveAgent }, primaryType: "ApproveAgent",
        message: { account: acct, agent: valid.agent, name: valid.name, nonce: n } };
    case "revoke_agent":
      return { ...base, types: { RevokeAgent: EIP712_TYPES.RevokeAgent }, primaryType: "RevokeAgent",
        message: { account: acct, agent: valid.agent, nonce: n } };
    default:
      return { ...base, types: { Action: EIP712_TYPES.Action }, primaryType: "Action",
        message: { hash: actionHash(acct, n, valid) } };
  }
}

/** hashStruct(message) of the intent's typed data. */
export function structHash(account: Address, nonce: IntLike, action: Action): Hex {
  // The domain does not enter the struct hash; any domain builds the same message.
  const data = typedData(account, nonce, action, { name: "", version: "", chainId: 1n, verifyingContract: `0x${"00".repeat(20)}` });
  return hashStruct({ data: data.message, primaryType: data.primaryType, types: data.types } as never);
}

/** The EIP-712 digest, which is also the intent id (§4.4). */
export function intentDigest(account: Address, nonce: IntLike, action: Action, domain: Domain): Hex {
  return hashTypedData(typedData(account, nonce, action, domain) as never);
}

// ---------------------------------------------------------------------------------------
// Signed intents and wire forms (§4.3–§4.5)

export interface SignedIntent {
  account: Address;
  nonce: bigint;
  action: Action;
  signature: Hex; // 65 bytes r ‖ s ‖ v, v ∈ {27, 28}
  id: Hex; // the EIP-712 digest
}

/** A signer: a 0x-hex private key or any viem LocalAccount (e.g. from a mnemonic). */
export type Signer = Hex | LocalAccount;

export function toAccount(signer: Signer): LocalAccount {
  return typeof signer === "string" ? privateKeyToAccount(signer) : signer;
}

/** Sign an intent with the account's key or an approved agent's (`account` names the
 * account traded for). viem signs deterministically (RFC 6979) with a low `s`. */
export async function signIntent(
  signer: Signer,
  account: Address,
  nonce: IntLike,
  action: Action | Record<string, unknown>,
  domain: Domain,
): Promise<SignedIntent> {
  const valid = validateAction(action);
  const acct = parseAddress(account, "account");
  const n = u64(nonce, "nonce") as bigint;
  const data = typedData(acct, n, valid, domain);
  const signature = await toAccount(signer).signTypedData(data as never);
  if (!isHex(signature) || signature.length !== 132) throw new Error("signer returned a malformed signature");
  return { account: acct, nonce: n, action: valid, signature, id: hashTypedData(data as never) };
}

/** The address whose key made the intent's signature (as a node recovers it). */
export async function recoverSigner(intent: SignedIntent, domain: Domain): Promise<Address> {
  const data = typedData(intent.account, intent.nonce, intent.action, domain);
  const signer = await recoverTypedDataAddress({ ...data, signature: intent.signature } as never);
  return parseAddress(signer);
}

/** The JSON wire form (§4.5), to be written with `stringifyJson` (u64s as bigints). */
export function intentToJson(intent: SignedIntent): Record<string, unknown> {
  return { action: { ...intent.action }, account: intent.account, nonce: intent.nonce, signature: intent.signature };
}

/** The msgpack wire form (§4.5): addresses and signature as `bin`. */
export function packIntent(intent: SignedIntent): Uint8Array {
  return packCanonical({
    action: toPackable(intent.action),
    account: hexToBytes(intent.account),
    nonce: intent.nonce,
    signature: hexToBytes(intent.signature),
  });
}
