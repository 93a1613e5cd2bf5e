/**
 * Streams from a node's `/v1/stream` WebSocket (docs/API.md "Streams"), with local order
 * books that resync after a gap; the twin of seqnet_sdk/stream.py.
 *
 *     const stream = await Stream.connect("http://127.0.0.1:8000");
 *     await stream.subscribeBook(0);
 *     for await (const message of stream) { stream.books.get(0) }   // kept from snapshot + deltas
 *
 * A book subscription starts with a snapshot at sequence `seq`; each delta must carry the
 * next one. A delta that skips one means a message was lost: the local book is marked
 * stale, the stream subscribes again (the node answers with a fresh snapshot), deltas are
 * ignored until that snapshot, and a `{channel: "book", type: "gap", market, expected,
 * got}` message is yielded so the caller knows. `stream.gaps` counts them.
 */
import WebSocket from "ws";

import { parseAddress } from "./intents.js";
import { parseJson, stringifyJson, toBigInt, type Int } from "./json.js";

export type StreamMessage = { channel: string; [key: string]: unknown };

/** The node closed the stream; `reason` says why (e.g. slow_consumer). */
export class StreamClosed extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`stream closed: ${code} ${reason}`);
    this.name = "StreamClosed";
  }
}

export class StreamTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StreamTimeout";
  }
}

type Level = [Int, Int];

export class LocalBook {
  seq = -1n;
  height = 0n;
  bids = new Map<bigint, bigint>(); // price (quote units per lot) -> open size
  asks = new Map<bigint, bigint>();
  stale = true;

  constructor(readonly market: number) {}

  applySnapshot(message: StreamMessage): void {
    this.bids = levelsOf(message["bids"] as Level[]);
    this.asks = levelsOf(message["asks"] as Level[]);
    this.seq = toBigInt(message["seq"]);
    this.height = toBigInt(message["height"]);
    this.stale = false;
  }

  /** Apply a delta; false (and nothing applied) if it does not follow `seq`. */
  applyDelta(message: StreamMessage): boolean {
    const seq = toBigInt(message["seq"]);
    if (this.stale || seq !== this.seq + 1n) return false;
    for (const [levels, changes] of [
      [this.bids, message["bids"]],
      [this.asks, message["asks"]],
    ] as const) {
      for (const [price, size] of changes as Level[]) {
        if (BigInt(size) === 0n) levels.delete(BigInt(price));
        else levels.set(BigInt(price), BigInt(size));
      }
    }
    this.seq = seq;
    this.height = toBigInt(message["height"]);
    return true;
  }

  bestBid(): bigint | null {
    return this.bids.size ? [...this.bids.keys()].reduce((a, b) => (b > a ? b : a)) : null;
  }

  bestAsk(): bigint | null {
    return this.asks.size ? [...this.asks.keys()].reduce((a, b) => (b < a ? b : a)) : null;
  }

  /** Up to `depth` levels a side, best first. */
  levels(depth: number): { bids: Array<[bigint, bigint]>; asks: Array<[bigint, bigint]> } {
    const sorted = (m: Map<bigint, bigint>, descending: boolean) =>
      [...m.entries()].sort(([a], [b]) => (a === b ? 0 : (a < b) !== descending ? -1 : 1)).slice(0, depth);
    return { bids: sorted(this.bids, true), asks: sorted(this.asks, false) };
  }
}

function levelsOf(levels: Level[]): Map<bigint, bigint> {
  return new Map(levels.map(([price, size]) => [BigInt(price), BigInt(size)]));
}

type Waiter = { resolve: (m: StreamMessage) => void; reject: (e: Error) => void };

export class Stream implements AsyncIterable<StreamMessage> {
  readonly books = new Map<number, LocalBook>();
  gaps = 0;
  private nextId = 1;
  private readonly queue: string[] = [];
  private readonly waiters: Waiter[] = [];
  private closed: StreamClosed | null = null;

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data: WebSocket.RawData) => {
      const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : data.toString("utf8");
      this.queue.push(text);
      this.wake();
    });
    ws.on("close", (code: number, reason: Buffer) => {
      this.closed = new StreamClosed(code, reason.toString("utf8"));
      this.wake();
    });
    ws.on("error", () => {
      // A 'close' event follows every error; it ends the stream.
    });
  }

  /** Open `/v1/stream` on the node at `url` (http(s):// or ws(s)://). */
  static async connect(url: string): Promise<Stream> {
    const wsUrl = url.replace(/^http:\/\//, "ws://").replace(/^https:\/\//, "wss://").replace(/\/+$/, "");
    const ws = new WebSocket(`${wsUrl}/v1/stream`, { maxPayload: 64 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return new Stream(ws);
  }

  private async send(request: Record<string, unknown>): Promise<number> {
    const id = this.nextId++;
    await new Promise<void>((resolve, reject) =>
      this.ws.send(stringifyJson({ ...request, id }), (error) => (error ? reject(error) : resolve())),
    );
    return id;
  }

  async subscribeBook(market: number): Promise<number> {
    this.books.set(market, new LocalBook(market));
    return this.send({ op: "subscribe", channel: "book", market });
  }

  async subscribeTrades(market: number): Promise<number> {
    return this.send({ op: "subscribe", channel: "trades", market });
  }

  async subscribeAccount(account: string): Promise<number> {
    return this.send({ op: "subscribe", channel: "account", account: parseAddress(account, "account") });
  }

  /** A perp market's index, mark, premium and funding (a snapshot first). */
  async subscribePrices(market: number): Promise<number> {
    return this.send({ op: "subscribe", channel: "prices", market });
  }

  /** A perp market's liquidation records (orders, fills, backstops, ADL), per block. */
  async subscribeLiquidations(market: number): Promise<number> {
    return this.send({ op: "subscribe", channel: "liquidations", market });
  }

  /** An account's margin summary and positions (a snapshot first, then whenever its perp
   * state, its balance or the mark of a market it holds moves). */
  async subscribePositions(account: string): Promise<number> {
    return this.send({ op: "subscribe", channel: "positions", account: parseAddress(account, "account") });
  }

  async subscribeCheckpoints(): Promise<number> {
    return this.send({ op: "subscribe", channel: "checkpoints" });
  }

  async unsubscribe(channel: string, key: Record<string, unknown> = {}): Promise<number> {
    if (channel === "book") this.books.delete(Number(key["market"]));
    return this.send({ op: "unsubscribe", channel, ...key });
  }

  async ping(): Promise<number> {
    return this.send({ op: "ping" });
  }

  /** The next message; book messages also update `books` (resyncing after a gap).
   * Throws `StreamClosed` once the node closed the connection. */
  async receive(timeoutMs?: number): Promise<StreamMessage> {
    const raw = await this.nextRaw(timeoutMs);
    const message = parseJson(raw) as StreamMessage;
    if (message.channel === "book") return this.onBook(message);
    return message;
  }

  /** The first message for which `predicate` holds (for scripts and tests). */
  async receiveUntil(predicate: (m: StreamMessage) => boolean, timeoutMs: number): Promise<StreamMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new StreamTimeout(`no matching message within ${timeoutMs} ms`);
      const message = await this.receive(left);
      if (predicate(message)) return message;
    }
  }

  private async onBook(message: StreamMessage): Promise<StreamMessage> {
    const book = this.books.get(Number(message["market"]));
    if (book === undefined) return message; // unsubscribed meanwhile
    if (message["type"] === "snapshot") {
      book.applySnapshot(message);
    } else if (!book.applyDelta(message) && !book.stale) {
      const expected = book.seq + 1n;
      book.stale = true;
      this.gaps += 1;
      await this.send({ op: "subscribe", channel: "book", market: book.market });
      return { channel: "book", type: "gap", market: book.market, expected, got: toBigInt(message["seq"]) };
    }
    return message;
  }

  private wake(): void {
    while (this.waiters.length && (this.queue.length || this.closed)) {
      const waiter = this.waiters.shift()!;
      const raw = this.queue.shift();
      if (raw !== undefined) waiter.resolve({ channel: "raw", raw });
      else waiter.reject(this.closed!);
    }
  }

  private nextRaw(timeoutMs?: number): Promise<string> {
    const raw = this.queue.shift();
    if (raw !== undefined) return Promise.resolve(raw);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise<string>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m["raw"] as string);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new StreamTimeout(`no message within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.waiters.push(waiter);
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamMessage> {
    for (;;) {
      try {
        yield await this.receive();
      } catch (error) {
        if (error instanceof StreamClosed && (error.code === 1000 || error.code === 1005)) return;
        throw error;
      }
    }
  }

  /** Close the connection (normal closure) and wait until it is closed. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.ws.once("close", () => resolve());
      this.ws.close(1000);
      setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2000).unref();
    });
  }
}
