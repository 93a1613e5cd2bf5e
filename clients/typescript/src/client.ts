/**
 * The trader client: sign locally, send to any node, read back (docs/API.md); the twin of
 * seqnet_sdk/client.py.
 *
 * One account on one node. Intents are signed here with the account's key or an approved
 * agent's (`account` names the account an agent trades for); the node never sees a key.
 * The EIP-712 domain is read from the node (`GET /v1/domain`), never built in. Prices and
 * sizes are human decimals converted exactly to ticks and lots with the market's metadata
 * (src/units.ts); engine integers can be given with `priceTicks` / `sizeUnits`.
 *
 * By default every call waits until its intents are committed (`wait: true`) and returns
 * one `IntentResult` per intent; a result with status `rejected` carries the engine's
 * code (insufficient_balance, post_only_would_cross, …). Transport and request errors
 * throw `ApiError`.
 *
 * `encrypted: true` (submit, place, cancel, cancelByCloid, batch) seals each intent to
 * the committee's threshold key (src/encrypted.ts, PROTOCOL.md §10) and posts the
 * envelopes to `/v1/intents/encrypted`: no member reads them before they are ordered.
 * A result's `id` is then the envelope's id, and its outcome the inner intent's.
 */
import { encryptAction, parseCommitteeKey, type CommitteeKey } from "./encrypted.js";
import {
  parseAddress,
  placeAction,
  signIntent,
  intentToJson,
  toAccount,
  domainFromJson,
  type Action,
  type Address,
  type Domain,
  type OrderKind,
  type Side,
  type Signer,
  type Tif,
  type IntLike,
} from "./intents.js";
import { parseJson, stringifyJson, toBigInt, type Int } from "./json.js";
import { Stream } from "./stream.js";
import { type MarketInfo, Markets, type Numeric } from "./units.js";

export const MAX_BATCH = 1000;
export const DEFAULT_TIMEOUT_MS = 10_000;

/** A request the node refused as a whole (4xx/5xx), or a node that cannot be reached (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${status} ${code}: ${message}`);
    this.name = "ApiError";
  }
}

export interface IntentResult {
  id: `0x${string}` | null;
  status: "accepted" | "committed" | "rejected" | "timeout";
  code?: string;
  message?: string;
  height?: Int;
  oid?: Int; // a committed order's id, when the node knows it
  retryAfterMs?: Int;
  raw: Record<string, unknown>;
}

export interface WithdrawResult extends IntentResult {
  /** The withdrawal's id (the leaf id of the withdrawals tree), once committed. */
  withdrawalId?: bigint;
}

/** How intents are sent: `wait` until committed (default: the client's), `encrypted`
 * to seal them to the committee key first. */
export interface SendOptions {
  wait?: boolean;
  encrypted?: boolean;
}

/** `GET /v1/fairness/key`, its key parsed and checked against its `key_id`. */
export interface CommitteeKeyInfo {
  key: CommitteeKey;
  epoch: bigint;
  raw: Record<string, unknown>;
}

export interface PlaceOptions extends SendOptions {
  kind?: OrderKind;
  tif?: Tif;
  cloid?: IntLike | null;
  expiresMs?: IntLike | null;
  reduceOnly?: boolean;
  priceTicks?: IntLike;
  sizeUnits?: IntLike;
}

/** A withdrawal's Merkle proof as `GET /v1/proofs/withdrawal/{sequence}/{id}` gives it:
 * exactly the arguments of the contract's `claimWithdrawal`. */
export interface WithdrawalProof {
  sequence: bigint;
  withdrawalId: bigint;
  account: Address;
  token: Address;
  amount: bigint; // token base units
  proof: `0x${string}`[];
  withdrawalsRoot: `0x${string}`;
}

export interface ClientOptions {
  /** The account traded for, when `signer` is an agent key it approved. */
  account?: string;
  /** Wait until committed (default true); `false`: answer once accepted. */
  wait?: boolean;
  timeoutMs?: number;
}

function resultOf(raw: Record<string, unknown>): IntentResult {
  const r: IntentResult = { id: (raw["id"] as IntentResult["id"]) ?? null, status: raw["status"] as IntentResult["status"], raw };
  if (typeof raw["code"] === "string") r.code = raw["code"];
  if (typeof raw["message"] === "string") r.message = raw["message"];
  if (raw["height"] !== undefined && raw["height"] !== null) r.height = raw["height"] as Int;
  if (raw["oid"] !== undefined && raw["oid"] !== null) r.oid = raw["oid"] as Int;
  if (raw["retry_after_ms"] !== undefined) r.retryAfterMs = raw["retry_after_ms"] as Int;
  return r;
}

export const isOk = (r: IntentResult): boolean => r.status === "accepted" || r.status === "committed";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Client {
  readonly url: string;
  readonly signer: Address;
  readonly account: Address;
  wait: boolean;
  timeoutMs: number;
  private readonly key;
  private domainCache: Domain | null = null;
  private marketsCache: Markets | null = null;
  private committeeKeyCache: CommitteeKeyInfo | null = null;
  private lastNonce = 0n;

  constructor(url: string, signer: Signer, options: ClientOptions = {}) {
    this.url = url.replace(/\/+$/, "");
    this.key = toAccount(signer);
    this.signer = parseAddress(this.key.address, "signer");
    this.account = options.account === undefined ? this.signer : parseAddress(options.account, "account");
    this.wait = options.wait ?? true;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  get address(): Address {
    return this.account;
  }

  // ---------------------------------------------------------------- plumbing

  private async request(method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? null : stringifyJson(body),
        signal: AbortSignal.timeout(this.timeoutMs + 5000),
      });
    } catch (error) {
      throw new ApiError(0, "unreachable", `${this.url}: ${(error as Error).message}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = parseJson(text);
    } catch {
      throw new ApiError(response.status, "bad_response", text.slice(0, 200));
    }
    if (response.status !== 200) {
      const error = ((parsed as Record<string, unknown>)?.["error"] ?? {}) as Record<string, unknown>;
      throw new ApiError(response.status, String(error["code"] ?? "http_error"), String(error["message"] ?? ""));
    }
    return parsed;
  }

  async get(path: string, query: Record<string, IntLike | string | undefined> = {}): Promise<any> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return this.request("GET", qs ? `${path}?${qs}` : path);
  }

  /** The EIP-712 domain to sign under, from `GET /v1/domain` (read once). */
  async domain(): Promise<Domain> {
    this.domainCache ??= domainFromJson(await this.get("/v1/domain"));
    return this.domainCache;
  }

  async markets(refresh = false): Promise<Markets> {
    if (this.marketsCache === null || refresh) this.marketsCache = Markets.fromJson(await this.get("/v1/markets"));
    return this.marketsCache;
  }

  /** A market by id or symbol. One the cached list lacks refreshes it once: the
   *  committee lists option series after genesis (docs/MATCHING.md, "Series by admin
   *  action"). */
  async market(which: number | string): Promise<MarketInfo> {
    try {
      return (await this.markets()).market(which);
    } catch {
      return (await this.markets(true)).market(which);
    }
  }

  /** The committee key for encrypted intents, from `GET /v1/fairness/key` (read on every
   * call; sealing uses the last one read). ApiError `no_committee_key` when the committee
   * takes none, or while the members' DKG has not made one yet. */
  async committeeKey(): Promise<CommitteeKeyInfo> {
    const raw = (await this.get("/v1/fairness/key")) as Record<string, unknown>;
    if (raw["status"] === "pending") throw new ApiError(404, "no_committee_key", "the committee key is pending (DKG)");
    const key = parseCommitteeKey(String(raw["committee_key"]));
    if (key.keyId !== raw["key_id"]) throw new ApiError(0, "bad_committee_key", "the key's id does not match its bytes");
    this.committeeKeyCache = { key, epoch: toBigInt(raw["epoch"], "epoch"), raw };
    return this.committeeKeyCache;
  }

  private async sealingKey(): Promise<CommitteeKeyInfo> {
    return this.committeeKeyCache ?? (await this.committeeKey());
  }

  /** Millisecond time, strictly increasing per client (PROTOCOL.md §2). */
  nonce(): bigint {
    const now = BigInt(Date.now());
    this.lastNonce = now > this.lastNonce ? now : this.lastNonce + 1n;
    return this.lastNonce;
  }

  /** Sign each action (§2 form, engine integers) and send them as one batch;
   * `encrypted`: sealed, to `/v1/intents/encrypted`. */
  async submit(actions: Array<Action | Record<string, unknown>>, options: SendOptions = {}): Promise<IntentResult[]> {
    if (actions.length < 1 || actions.length > MAX_BATCH) throw new RangeError(`a batch holds 1 to ${MAX_BATCH} actions`);
    const domain = await this.domain();
    const wait = options.wait ?? this.wait;
    if (options.encrypted) return this.submitEncrypted(actions, domain, wait);
    const intents = [];
    for (const action of actions) {
      intents.push(intentToJson(await signIntent(this.key, this.account, this.nonce(), action, domain)));
    }
    return this.postBatch("/v1/intents", { intents }, wait);
  }

  /** Seal and post; envelopes refused `wrong_epoch` at intake (the committee made a new
   * key since we read ours: none of them was admitted) are sealed again to the new key
   * and posted once more. */
  private async submitEncrypted(
    actions: Array<Action | Record<string, unknown>>,
    domain: Domain,
    wait: boolean,
  ): Promise<IntentResult[]> {
    const results = await this.sealAndPost(actions, domain, wait);
    const stale = results.flatMap((r, i) => (r.code === "wrong_epoch" && r.height === undefined ? [i] : []));
    if (stale.length > 0) {
      const oldEpoch = (await this.sealingKey()).epoch;
      const { epoch } = await this.committeeKey();
      if (epoch !== oldEpoch) {
        const again = await this.sealAndPost(stale.map((i) => actions[i]!), domain, wait);
        stale.forEach((i, k) => (results[i] = again[k]!));
      }
    }
    return results;
  }

  private async sealAndPost(
    actions: Array<Action | Record<string, unknown>>,
    domain: Domain,
    wait: boolean,
  ): Promise<IntentResult[]> {
    const { key, epoch } = await this.sealingKey();
    const envelopes = [];
    for (const action of actions) {
      envelopes.push((await encryptAction(this.key, this.account, this.nonce(), action, domain, key, epoch)).hex);
    }
    return this.postBatch("/v1/intents/encrypted", { envelopes }, wait);
  }

  private async postBatch(path: string, body: Record<string, unknown[]>, wait: boolean): Promise<IntentResult[]> {
    const query = wait ? `?wait=committed&timeout_ms=${this.timeoutMs}` : "";
    const answer = (await this.request("POST", `${path}${query}`, body)) as { results: Array<Record<string, unknown>> };
    return answer.results.map(resultOf);
  }

  private async one(action: Action | Record<string, unknown>, wait?: boolean, encrypted = false): Promise<IntentResult> {
    const [result] = await this.submit([action], wait === undefined ? { encrypted } : { wait, encrypted });
    return result!;
  }

  // ---------------------------------------------------------------- actions

  /** The §2 `place` action; decimals converted exactly (OffGrid if not on the grid). */
  async placeAction(market: number | string, side: Side, size?: Numeric, price?: Numeric, options: PlaceOptions = {}): Promise<Action> {
    const info = (await this.market(market));
    if ((size === undefined) === (options.sizeUnits === undefined)) throw new TypeError("give exactly one of size and sizeUnits");
    if ((price === undefined) === (options.priceTicks === undefined)) {
      throw new TypeError("give exactly one of price and priceTicks (a market order's limit)");
    }
    const ticks = price === undefined ? options.priceTicks! : info.priceToTicks(price);
    const units = size === undefined ? options.sizeUnits! : info.sizeToUnits(size);
    const built: Parameters<typeof placeAction>[4] = { reduceOnly: options.reduceOnly ?? false };
    if (options.kind !== undefined) built.kind = options.kind;
    if (options.tif !== undefined) built.tif = options.tif;
    if (options.cloid !== undefined) built.cloid = options.cloid;
    if (options.expiresMs !== undefined) built.expiresMs = options.expiresMs;
    return placeAction(info.id, side, ticks, units, built);
  }

  /** Place one order, e.g. `await client.place("ETH-USDC", "buy", "0.5", "3000.25")`;
   * `{ encrypted: true }` seals it to the committee key until it is ordered. */
  async place(market: number | string, side: Side, size?: Numeric, price?: Numeric, options: PlaceOptions = {}): Promise<IntentResult> {
    return this.one(await this.placeAction(market, side, size, price, options), options.wait, options.encrypted);
  }

  async cancel(market: number | string, oid: IntLike, options: SendOptions = {}): Promise<IntentResult> {
    const info = (await this.market(market));
    return this.one({ type: "cancel", market: info.id, oid: BigInt(oid) }, options.wait, options.encrypted);
  }

  async cancelByCloid(market: number | string, cloid: IntLike, options: SendOptions = {}): Promise<IntentResult> {
    const info = (await this.market(market));
    return this.one({ type: "cancel_cloid", market: info.id, cloid: BigInt(cloid) }, options.wait, options.encrypted);
  }

  /** Cancel every open order of the account, in one market or (no market) in all. */
  async cancelAll(market?: number | string, options: { wait?: boolean } = {}): Promise<IntentResult> {
    const id = market === undefined ? null : (await this.market(market)).id;
    return this.one({ type: "cancel_all", market: id }, options.wait);
  }

  /** Cancel-replace keeping oid/cloid/expiry (priority kept only when the price is
   * unchanged and the size does not grow). */
  async modify(market: number | string, oid: IntLike, size: Numeric, price: Numeric, options: { wait?: boolean } = {}): Promise<IntentResult> {
    const info = (await this.market(market));
    const action = { type: "modify", market: info.id, oid, price: info.priceToTicks(price), size: info.sizeToUnits(size) };
    return this.one(action, options.wait);
  }

  /** Several actions in one request (build places with `placeAction`). */
  async batch(actions: Array<Action | Record<string, unknown>>, options: SendOptions = {}): Promise<IntentResult[]> {
    return this.submit(actions, options);
  }

  /** Let `agent` trade (never withdraw) for this account; sign with the account key. */
  async approveAgent(agent: string, name: string, options: { wait?: boolean } = {}): Promise<IntentResult> {
    return this.one({ type: "approve_agent", agent: parseAddress(agent, "agent"), name }, options.wait);
  }

  /** Take back `agent`'s right to trade for this account (its intents not yet executed
   * are refused; the account's orders stay); sign with the account key. */
  async revokeAgent(agent: string, options: { wait?: boolean } = {}): Promise<IntentResult> {
    return this.one({ type: "revoke_agent", agent: parseAddress(agent, "agent") }, options.wait);
  }

  // Perpetual futures (docs/API.md "Perpetual futures"; rules in docs/MATCHING.md).

  /** A perp market's leverage (1..max_leverage) and margin mode (cross, or isolated;
   * the mode changes only without a position or open orders there). */
  async setLeverage(market: number | string, leverage: number, options: { isolated?: boolean; wait?: boolean } = {}): Promise<IntentResult> {
    const info = (await this.market(market));
    return this.one({ type: "set_leverage", market: info.id, leverage, isolated: options.isolated ?? false }, options.wait);
  }

  /** Move collateral (human units, e.g. "250.5" USDC) from cross into an isolated position. */
  async addMargin(market: number | string, amount: Numeric, options: { wait?: boolean } = {}): Promise<IntentResult> {
    const info = (await this.market(market));
    return this.one({ type: "add_margin", market: info.id, amount: info.quote.toUnits(amount) }, options.wait);
  }

  /** Move collateral back from an isolated position to cross (it keeps its initial margin). */
  async removeMargin(market: number | string, amount: Numeric, options: { wait?: boolean } = {}): Promise<IntentResult> {
    const info = (await this.market(market));
    return this.one({ type: "remove_margin", market: info.id, amount: info.quote.toUnits(amount) }, options.wait);
  }

  /**
   * The account's option margin mode: "portfolio" (the scenario risk matrix over options
   * and perps together) or "standard" (each option leg margined alone). Refused
   * (insufficient_margin) if the equity would not cover the new mode's initial margin.
   */
  async setOptionMargin(mode: "portfolio" | "standard", options: { wait?: boolean } = {}): Promise<IntentResult> {
    return this.one({ type: "set_option_margin", mode }, options.wait);
  }

  /**
   * Debit `amount` (human units, or `amountUnits` in engine units) now; claim it on chain
   * once a checkpoint carrying it lands (`Settlement.claim`). When it waits for the commit
   * (the default), the answer also carries the withdrawal's id: the client watches the
   * account stream, subscribed before the intent is sent, for the withdrawal executed at
   * the committed height.
   */
  async withdraw(asset: number | string, amount?: Numeric, options: { amountUnits?: IntLike; wait?: boolean } = {}): Promise<WithdrawResult> {
    const info = (await this.markets()).asset(asset);
    if ((amount === undefined) === (options.amountUnits === undefined)) throw new TypeError("give exactly one of amount and amountUnits");
    const units = amount === undefined ? BigInt(options.amountUnits!) : info.toUnits(amount);
    const action = { type: "withdraw", asset: info.id, amount: units };
    if (!(options.wait ?? this.wait)) return this.one(action, false);
    const stream = await this.stream();
    try {
      const ack = await stream.subscribeAccount(this.account);
      await stream.receiveUntil((m) => m.channel === "subscribed" && m["id"] === ack, this.timeoutMs);
      const result: WithdrawResult = await this.one(action, true);
      if (result.raw["withdrawal_id"] !== undefined) {
        result.withdrawalId = toBigInt(result.raw["withdrawal_id"]); // nodes that answer it
      } else if (result.status === "committed") {
        const height = toBigInt(result.height);
        const found = await stream.receiveUntil(
          (m) => m.channel === "account" && toBigInt(m["height"]) === height && withdrawalIn(m, info.id, units) !== undefined,
          this.timeoutMs,
        );
        result.withdrawalId = toBigInt(withdrawalIn(found, info.id, units)!["id"]);
      }
      return result;
    } finally {
      await stream.close();
    }
  }

  // ---------------------------------------------------------------- queries

  async status(): Promise<any> {
    return this.get("/v1/status");
  }

  /** Balances (engine units) and open orders, at the height given in the answer. */
  async accountState(address?: string): Promise<any> {
    return this.get(`/v1/accounts/${this.addr(address)}`);
  }

  /** Per asset symbol: available and locked, as exact decimal strings in human units. */
  async balances(address?: string): Promise<Record<string, { available: string; locked: string }>> {
    const raw = await this.accountState(address);
    const markets = await this.markets();
    const out: Record<string, { available: string; locked: string }> = {};
    for (const [symbol, b] of Object.entries(raw.balances as Record<string, Record<string, Int>>)) {
      const asset = markets.asset(Number(b["asset"]));
      out[symbol] = { available: asset.fromUnits(b["available"]!), locked: asset.fromUnits(b["locked"]!) };
    }
    return out;
  }

  async book(market: number | string, depth = 20): Promise<any> {
    const info = (await this.market(market));
    return this.get(`/v1/markets/${info.id}/book`, { depth });
  }

  async trades(market: number | string, limit = 100): Promise<any[]> {
    const info = (await this.market(market));
    return (await this.get(`/v1/markets/${info.id}/trades`, { limit })).trades;
  }

  async openOrders(address?: string): Promise<any[]> {
    return (await this.get(`/v1/accounts/${this.addr(address)}/orders`)).orders;
  }

  async orderHistory(address?: string, limit = 100): Promise<any[]> {
    return (await this.get(`/v1/accounts/${this.addr(address)}/history`, { limit })).orders;
  }

  async fills(address?: string, limit = 100): Promise<any[]> {
    return (await this.get(`/v1/accounts/${this.addr(address)}/fills`, { limit })).fills;
  }

  async order(oid: IntLike): Promise<any> {
    return this.get(`/v1/orders/${oid}`);
  }

  async orderByCloid(cloid: IntLike, address?: string): Promise<any> {
    return this.get(`/v1/accounts/${this.addr(address)}/orders/cloid/${cloid}`);
  }

  /** Perp positions: signed size, entry, mark, PnL, margin mode, leverage, liquidation price. */
  async positions(address?: string): Promise<any[]> {
    return (await this.get(`/v1/accounts/${this.addr(address)}/positions`)).positions;
  }

  /** The margin summary: collateral, equity, initial/maintenance margin, free collateral,
   * leverage (bps) and the positions. */
  async margin(address?: string): Promise<any> {
    return this.get(`/v1/accounts/${this.addr(address)}/margin`);
  }

  /** A perp market's index, mark, funding estimate and oracle (every perp market's without one). */
  async prices(market?: number | string): Promise<any> {
    if (market === undefined) return (await this.get("/v1/prices")).markets;
    const info = (await this.market(market));
    return this.get(`/v1/markets/${info.id}/prices`);
  }

  /** Funding payments of an account (> 0 received), most recent first. */
  async funding(address?: string, limit = 100): Promise<any[]> {
    return (await this.get(`/v1/accounts/${this.addr(address)}/funding`, { limit })).funding;
  }

  /** Funding rates paid in a perp market, most recent first. */
  async fundingRates(market: number | string, limit = 100): Promise<any[]> {
    const info = (await this.market(market));
    return (await this.get(`/v1/markets/${info.id}/funding`, { limit })).funding;
  }

  /** Liquidation records of an account, or of a market (`{ market }`), most recent first. */
  async liquidations(address?: string, options: { market?: number | string; limit?: number } = {}): Promise<any[]> {
    const limit = options.limit ?? 100;
    if (options.market !== undefined) {
      const info = (await this.market(options.market));
      return (await this.get(`/v1/markets/${info.id}/liquidations`, { limit })).liquidations;
    }
    return (await this.get(`/v1/accounts/${this.addr(address)}/liquidations`, { limit })).liquidations;
  }

  async checkpoints(): Promise<any[]> {
    return (await this.get("/v1/checkpoints")).checkpoints;
  }

  /** The proof of withdrawal `withdrawalId` in checkpoint `sequence`, or null. */
  async withdrawalProofIn(sequence: IntLike, withdrawalId: IntLike): Promise<WithdrawalProof | null> {
    try {
      return proofOf(await this.get(`/v1/proofs/withdrawal/${sequence}/${withdrawalId}`));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  /** Wait until a checkpoint carries withdrawal `withdrawalId` and return its proof.
   * Checkpoints are sealed every K blocks; a sealed one never gains a withdrawal, so
   * each is asked once. */
  async withdrawalProof(withdrawalId: IntLike, options: { timeoutMs?: number; pollMs?: number } = {}): Promise<WithdrawalProof> {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    const asked = new Set<bigint>();
    for (;;) {
      for (const cp of await this.checkpoints()) {
        const sequence = toBigInt(cp.sequence);
        if (asked.has(sequence)) continue;
        asked.add(sequence);
        const found = await this.withdrawalProofIn(sequence, withdrawalId);
        if (found !== null) return found;
      }
      if (Date.now() > deadline) throw new ApiError(0, "timeout", `withdrawal ${withdrawalId} is in no checkpoint yet`);
      await sleep(options.pollMs ?? 500);
    }
  }

  private addr(address?: string): Address {
    return address === undefined ? this.account : parseAddress(address);
  }

  // ---------------------------------------------------------------- streams

  /** A `/v1/stream` connection (see src/stream.ts); close it when done. */
  async stream(): Promise<Stream> {
    return Stream.connect(this.url);
  }
}

function withdrawalIn(message: Record<string, unknown>, asset: number, amount: bigint): Record<string, unknown> | undefined {
  const updates = (message["updates"] ?? []) as Array<Record<string, unknown>>;
  return updates.find((u) => u["type"] === "withdrawal" && Number(u["asset"]) === asset && toBigInt(u["amount"]) === amount);
}

function proofOf(raw: Record<string, unknown>): WithdrawalProof {
  return {
    sequence: toBigInt(raw["sequence"]),
    withdrawalId: toBigInt(raw["withdrawal_id"]),
    account: parseAddress(raw["account"], "account"),
    token: parseAddress(raw["token"], "token"),
    amount: toBigInt(raw["amount"], "amount"),
    proof: raw["proof"] as `0x${string}`[],
    withdrawalsRoot: raw["withdrawals_root"] as `0x${string}`,
  };
}

