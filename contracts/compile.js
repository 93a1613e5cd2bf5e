// Compile a solc standard-JSON input (stdin) with the pinned solc-js; print the output.
// Imports resolve against node_modules (OpenZeppelin). Used by contracts/build.py.
"use strict";
const fs = require("fs");
const path = require("path");

const [root, want] = process.argv.slice(2);
const solc = require(path.join(root, "node_modules", "solc"));
if (!solc.version().startsWith(want + "+")) {
  process.stderr.write(`solc ${solc.version()} is not the pinned ${want}\n`);
  process.exit(3);
}
function findImports(name) {
  const file = path.join(root, "node_modules", name);
  if (!file.startsWith(path.join(root, "node_modules") + path.sep)) return { error: "outside node_modules" };
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (e) {
    return { error: `not found: ${name}` };
  }
}
const input = fs.readFileSync(0, "utf8");
const output = JSON.parse(solc.compile(input, { import: findImports }));
output.solcVersion = solc.version();
process.stdout.write(JSON.stringify(output));
