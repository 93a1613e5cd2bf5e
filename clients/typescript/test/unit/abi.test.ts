// src/abi.ts is the committed artifact's ABI (regenerate with `node scripts/gen-abi.mjs`).
import assert from "node:assert/strict";
import { it } from "node:test";

import { settlementAbi } from "../../src/abi.js";
import { readRepoFile } from "../repo.js";

it("settlement ABI matches contracts/build/Settlement.json", () => {
  const artifact = JSON.parse(readRepoFile("contracts/build/Settlement.json")) as { abi: unknown };
  assert.deepEqual(settlementAbi, artifact.abi);
});
