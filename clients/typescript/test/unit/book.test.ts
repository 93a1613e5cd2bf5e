// LocalBook: snapshot, deltas, and the refusal of a delta that skips a sequence (the
// stream then resubscribes; test/integration covers that against a live node).
import assert from "node:assert/strict";
import { it } from "node:test";

import { LocalBook } from "../../src/stream.js";

it("applies deltas in sequence and refuses a gap", () => {
  const book = new LocalBook(0);
  assert.equal(book.applyDelta({ channel: "book", seq: 1, height: 1, bids: [], asks: [] }), false); // stale
  book.applySnapshot({ channel: "book", seq: 17, height: 810, bids: [[100, 5]], asks: [[110, 2], [120, 1]] });
  assert.ok(book.applyDelta({ channel: "book", seq: 18, height: 812, bids: [[101, 3]], asks: [[110, 0]] }));
  assert.deepEqual(book.levels(5), { bids: [[101n, 3n], [100n, 5n]], asks: [[120n, 1n]] });
  assert.equal(book.bestBid(), 101n);
  assert.equal(book.bestAsk(), 120n);
  assert.equal(book.applyDelta({ channel: "book", seq: 20, height: 815, bids: [], asks: [] }), false);
  assert.equal(book.seq, 18n);
  // u64 values past 2^53 arrive as bigints and stay exact.
  assert.ok(book.applyDelta({ channel: "book", seq: 19, height: 816, bids: [[2n ** 60n, 1]], asks: [] }));
  assert.equal(book.bestBid(), 2n ** 60n);
});
