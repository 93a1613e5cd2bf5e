/**
 * seqnet TypeScript client: sign intents locally (EIP-712 with viem, canonical msgpack),
 * trade on any committee node over HTTP, follow its WebSocket stream with gap resync,
 * deposit and claim withdrawals on chain, seal intents to the committee key (encrypted
 * intents). See README.md and docs/PROTOCOL.md.
 */
export { settlementAbi } from "./abi.js";
export {
  ApiError,
  Client,
  isOk,
  MAX_BATCH,
  type ClientOptions,
  type CommitteeKeyInfo,
  type IntentResult,
  type PlaceOptions,
  type SendOptions,
  type WithdrawalProof,
  type WithdrawResult,
} from "./client.js";
export {
  decodeEnvelope,
  encryptAction,
  encryptIntent,
  envelopeTypedData,
  FairnessError,
  MAX_ENVELOPE_BYTES,
  MAX_INTENT_MSGPACK_BYTES,
  MIN_ENVELOPE_BYTES,
  parseCommitteeKey,
  type CommitteeKey,
  type Envelope,
  type EnvelopeHeader,
  type SealOptions,
} from "./encrypted.js";
export * from "./intents.js";
export { parseJson, stringifyJson, toBigInt, type Int } from "./json.js";
export { packCanonical, type Packable } from "./msgpack.js";
export { Settlement, type TxResult } from "./settlement.js";
export { LocalBook, Stream, StreamClosed, StreamTimeout, type StreamMessage } from "./stream.js";
export { AssetInfo, MarketInfo, Markets, OffGrid, type Numeric } from "./units.js";
export type { Hex } from "viem";
