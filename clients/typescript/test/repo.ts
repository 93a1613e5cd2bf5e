// Paths into the seqnet repository that holds this package (docs, contract artifacts).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "docs", "PROTOCOL.md"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("not inside the seqnet repository (no docs/PROTOCOL.md above)");
    dir = up;
  }
  return dir;
}

export const REPO_ROOT = findRoot();

export function readRepoFile(path: string): string {
  return readFileSync(join(REPO_ROOT, path), "utf8");
}
