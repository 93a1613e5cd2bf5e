"""Build and load the committed contract artifacts (ABI + bytecode in contracts/build/).

The compiler is the npm `solc` package at a pinned version, run through `node` on a
standard-JSON input (contracts/compile.js), with OpenZeppelin imports resolved from
node_modules. The output is deterministic (relative source names, sorted JSON), so a
rebuild into a temporary directory must reproduce the committed files byte for byte:
tests/contracts/test_artifacts.py checks that. `seqnet contracts build` rebuilds them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOLC_VERSION = "0.8.37"
EVM_VERSION = "prague"  # py-evm runs up to Prague; solc 0.8.37 defaults to osaka
OPTIMIZER_RUNS = 10_000

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
SOURCE_DIR = PACKAGE_DIR / "src"
BUILD_DIR = PACKAGE_DIR / "build"
COMPILE_JS = PACKAGE_DIR / "compile.js"
COMPILE_TIMEOUT_S = 300

SETTINGS: dict[str, Any] = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


class BuildError(Exception):
    """The compiler could not be run or reported errors."""


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes


def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> Artifact:
    data = json.loads((build_dir / f"{name}.json").read_text())
    return Artifact(name=name, abi=data["abi"], bytecode=bytes.fromhex(data["bytecode"][2:]))


def _sources() -> dict[str, dict[str, str]]:
    files = sorted(SOURCE_DIR.rglob("*.sol"))
    if not files:
        raise BuildError(f"no Solidity sources under {SOURCE_DIR}")
    return {f.relative_to(PACKAGE_DIR).as_posix(): {"content": f.read_text()} for f in files}


def compile_sources() -> dict[str, str]:
    """Compile contracts/src; return {file name: artifact JSON text} for our contracts."""
    node = shutil.which("node")
    if node is None:
        raise BuildError("node not found: install Node.js 20+ (./dev setup)")
    if not (ROOT / "node_modules" / "solc").is_dir():
        raise BuildError("node_modules/solc missing: run ./dev setup (npm ci)")
    sources = _sources()
    standard_input = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    proc = subprocess.run(
        [node, str(COMPILE_JS), str(ROOT), SOLC_VERSION],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        timeout=COMPILE_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"solc failed ({proc.returncode}): {proc.stderr.strip()}")
    output = json.loads(proc.stdout)
    messages = output.get("errors", [])
    errors = [m for m in messages if m.get("severity") == "error"]
    if errors:
        raise BuildError("\n".join(m.get("formattedMessage", m["message"]) for m in errors))
    for m in messages:
        # Warnings in our own sources only; OpenZeppelin's are theirs to keep.
        if m.get("sourceLocation", {}).get("file", "src/").startswith("src/"):
            print(m.get("formattedMessage", m["message"]), file=sys.stderr)
    artifacts: dict[str, str] = {}
    for source_name in sources:
        for contract_name, contract in output["contracts"].get(source_name, {}).items():
            artifact = {
                "contractName": contract_name,
                "sourceName": source_name,
                "abi": contract["abi"],
                "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
                "compiler": {"solc": output["solcVersion"], "settings": SETTINGS},
            }
            if contract_name + ".json" in artifacts:
                raise BuildError(f"two contracts named {contract_name}")
            artifacts[contract_name + ".json"] = (
                json.dumps(artifact, indent=1, sort_keys=True) + "\n"
            )
    return artifacts


def write_artifacts(out_dir: Path) -> list[Path]:
    artifacts = compile_sources()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        if stale.name not in artifacts:
            stale.unlink()
    written = []
    for file_name, text in sorted(artifacts.items()):
        path = out_dir / file_name
        path.write_text(text)
        written.append(path)
    return written


def differences(built: dict[str, str], build_dir: Path = BUILD_DIR) -> list[str]:
    """File names whose committed artifact is missing, extra, or differs from `built`."""
    committed = {p.name: p.read_text() for p in build_dir.glob("*.json")}
    names = sorted(set(committed) | set(built))
    return [n for n in names if committed.get(n) != built.get(n)]


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=f"compile contracts/src with solc {SOLC_VERSION} (solc-js)"
    )
    parser.add_argument("--out", type=Path, default=BUILD_DIR, help="artifact directory")
    parser.add_argument(
        "--check", action="store_true", help="only compare with the committed artifacts"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = differences(compile_sources(), args.out)
            for name in stale:
                print(f"out of date: {name}", file=sys.stderr)
            return 1 if stale else 0
        for path in write_artifacts(args.out):
            print(path)
    except BuildError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], "python -m contracts.artifacts"))
