"""`seqnet replay FILE`: re-execute a JSONL block log; print the events and the state root.

The format is docs/PROTOCOL.md §4 "Replay log": an optional first line {"genesis": {...}}
(else --genesis FILE), then one block per line {"height", "timestamp_ms", "entries",
"checkpoint"?}. The output is a pure function of the input: same file, same bytes out.

A line nested deeper than the intake's limit (node/intents.py, MAX_JSON_DEPTH) is refused
before it is parsed, with its line number: the parser and the conversion below recurse,
and no honest log comes near the limit.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from matching.checkpoint import Checkpoint
from matching.config import ConfigError, Genesis
from matching.engine import Engine
from matching.events import Event, to_plain
from node.intents import MAX_JSON_DEPTH, IntentError, check_json_depth

ADDRESS_FIELDS = frozenset(("account", "signer", "agent", "member"))  # member: oracle, vols


class LogError(ValueError):
    """A replay log that cannot be read (with its line number)."""


@dataclass(frozen=True, slots=True)
class LogBlock:
    height: int
    timestamp_ms: int
    entries: list[Any]
    checkpoint: bool


def _from_json(value: Any, key: str = "") -> Any:
    """Plain JSON -> engine entry: 0x-hex in address fields becomes 20 bytes. Anything
    else passes through unchanged, so a bad entry reaches the engine and is rejected
    there, exactly as it would be in a node."""
    if isinstance(value, dict):
        return {k: _from_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if key in ADDRESS_FIELDS and isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return value
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def block_line(height: int, timestamp_ms: int, entries: list[Any], checkpoint: bool = False) -> str:
    """One log line for a block of engine entries (the writer's side of the format)."""
    line: dict[str, Any] = {
        "height": height,
        "timestamp_ms": timestamp_ms,
        "entries": _to_json(entries),
    }
    if checkpoint:
        line["checkpoint"] = True
    return json.dumps(line, separators=(",", ":"))


def genesis_line(genesis: Genesis) -> str:
    return json.dumps({"genesis": genesis.to_dict()}, separators=(",", ":"))


def read_log(lines: Iterator[str]) -> tuple[Genesis | None, Iterator[LogBlock]]:
    """The genesis (if the first line holds one) and the blocks, checked as read."""
    numbered = ((n, line) for n, line in enumerate(lines, start=1) if line.strip())
    first = next(numbered, None)
    genesis: Genesis | None = None
    pending: list[tuple[int, str]] = []
    if first is not None:
        number, line = first
        obj = _parse(number, line)
        if "genesis" in obj:
            try:
                genesis = Genesis.from_dict(obj["genesis"])
            except ConfigError as exc:
                raise LogError(f"line {number}: bad genesis: {exc}") from exc
        else:
            pending.append(first)

    def blocks() -> Iterator[LogBlock]:
        last_height: int | None = None
        for number, line in (*pending, *numbered):
            block = _block(number, _parse(number, line))
            if last_height is not None and block.height != last_height + 1:
                raise LogError(f"line {number}: height {block.height} after {last_height}")
            last_height = block.height
            yield block

    return genesis, blocks()


def _loads(text: str, where: str) -> Any:
    """JSON text -> object, refusing nesting deeper than MAX_JSON_DEPTH first."""
    try:
        check_json_depth(text.encode())
    except IntentError:
        raise LogError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:  # ValueError: an int of >4300 digits
        raise LogError(f"{where}: not JSON: {exc}") from exc


def _parse(number: int, line: str) -> dict[str, Any]:
    obj = _loads(line, f"line {number}")
    if not isinstance(obj, dict):
        raise LogError(f"line {number}: expected a JSON object")
    return obj


def _block(number: int, obj: dict[str, Any]) -> LogBlock:
    height, ts, entries = obj.get("height"), obj.get("timestamp_ms"), obj.get("entries")
    if type(height) is not int or type(ts) is not int or not isinstance(entries, list):
        raise LogError(f"line {number}: a block needs integer height, timestamp_ms and entries")
    return LogBlock(height, ts, _from_json(entries), obj.get("checkpoint") is True)


class Printer:
    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json

    def event(self, height: int, entry: int | None, event: Event) -> None:
        plain = to_plain(event)
        if self.as_json:
            record = {"height": height, "entry": entry, **plain}
            self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
            return
        kind = plain.pop("event")
        where = f"{height}.{entry}" if entry is not None else f"{height}.-"
        fields = " ".join(f"{k}={v}" for k, v in plain.items())
        self.out.write(f"{where:>10} {kind:<14} {fields}\n")

    def checkpoint(self, height: int, cp: Checkpoint) -> None:
        record = {
            "height": height,
            "checkpoint": cp.sequence,
            "state_root": "0x" + cp.state_root.hex(),
            "withdrawals_root": "0x" + cp.withdrawals_root.hex(),
            "last_deposit_id": cp.last_deposit_id,
            "withdrawals": [
                [w.withdrawal_id, "0x" + w.account.hex(), "0x" + w.token.hex(), str(w.amount)]
                for w in cp.withdrawals
            ],
        }
        if self.as_json:
            self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        else:
            self.out.write(
                f"{height:>8}.* checkpoint     sequence={cp.sequence} "
                f"state_root={record['state_root']} withdrawals={len(cp.withdrawals)}\n"
            )


def replay(genesis: Genesis, blocks: Iterator[LogBlock], printer: Printer) -> Checkpoint:
    """Apply every block; checkpoint where the log says so, and once at the end."""
    engine = Engine(genesis)
    height = 0
    for block in blocks:
        height = block.height
        result = engine.apply_block(block.timestamp_ms, block.entries)
        for event in result.expired:
            printer.event(height, None, event)
        for index, events in enumerate(result.events):
            for event in events:
                printer.event(height, index, event)
        for event in result.end:  # the end step: auction clearings, perp prices and liquidations
            printer.event(height, None, event)
        if block.checkpoint:
            printer.checkpoint(height, engine.checkpoint())
    final = engine.checkpoint()
    printer.checkpoint(height, final)
    return final


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, help="JSONL block log ('-' for stdin)")
    parser.add_argument("--genesis", type=Path, help="genesis JSON, if the log has none")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    try:
        handle = sys.stdin if str(args.file) == "-" else args.file.open(encoding="utf-8")
        with handle:
            genesis, blocks = read_log(iter(handle))
            if args.genesis is not None:
                if genesis is not None:
                    raise LogError("the log has a genesis line; drop --genesis")
                text = args.genesis.read_text(encoding="utf-8")
                genesis = Genesis.from_dict(_loads(text, str(args.genesis)))
            if genesis is None:
                raise LogError('no genesis: put {"genesis": ...} first or pass --genesis')
            printer = Printer(sys.stdout, args.json)
            final = replay(genesis, blocks, printer)
    except (OSError, LogError, ConfigError, json.JSONDecodeError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"state_root 0x{final.state_root.hex()}")
    return 0
