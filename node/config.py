"""A node's own TOML config, and the strict TOML reading that genesis shares.

The config says where this node's things are (key files, data directory, genesis file)
and where it listens. What the whole committee agrees on lives in genesis (genesis.py).
Every value is checked on load; a bad file is a `ConfigError` naming the file and the key,
never a half-configured node. Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import os.path
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

import tomli_w

from node.oracle.sources import parse_price

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# In a data directory, written by `committee init`: no member has run from it yet, so a
# first start needs no wipe guard (docs/OPERATIONS.md, "Wiped data").
FRESH_DATA_MARK: Final = "FRESH"
MAX_CONFIG_BYTES: Final = 1 << 20

T = TypeVar("T")


class ConfigError(Exception):
    """A config or genesis file is unreadable or invalid; the message names file and key."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def write_toml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(tomli_w.dumps(data))


class Table:
    """Typed, strict access to one TOML table: each `take_*` consumes a key; `done()`
    then refuses whatever keys were not consumed (a typo is an error, not a default)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table")
        self._data: dict[str, Any] = data
        self._where = where
        self._seen: set[str] = set()

    def _label(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._label(key)}: {message}")

    def _take(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        if key not in self._data:
            if default is _REQUIRED:
                raise self.error(key, "missing")
            return default
        return self._data[key]

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self._take(key, _REQUIRED if default is None else default)
        if type(value) is not int or not low <= value <= high:
            raise self.error(key, f"must be an integer in {low}..{high}")
        return value

    def text(self, key: str, default: str | None = None, max_len: int = 256) -> str:
        value = self._take(key, _REQUIRED if default is None else default)
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.error(key, f"must be a non-empty string of at most {max_len} characters")
        return value

    def optional_text(self, key: str) -> str | None:
        if key not in self._data:
            self._seen.add(key)
            return None
        return self.text(key)

    def hex_bytes(self, key: str, size: int, prefix: bool) -> bytes:
        """Exactly `size` bytes as hex digits (after `0x` when `prefix`)."""
        value = self.text(key)
        has_prefix = value[:2] in ("0x", "0X")
        body = value[2:] if has_prefix else value
        if has_prefix == prefix and len(body) == 2 * size and all(c in _HEX for c in body):
            return bytes.fromhex(body)
        raise self.error(key, f"must be {'0x + ' if prefix else ''}{2 * size} hex digits")

    def address(self, key: str) -> bytes:
        return self.hex_bytes(key, 20, prefix=True)

    def optional_address(self, key: str) -> bytes | None:
        if key not in self._data:
            self._seen.add(key)
            return None
        return self.address(key)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}")
        return value

    def raw(self, key: str) -> Any:
        """The value as parsed, for a table another room validates."""
        return self._take(key, _REQUIRED)

    def optional_raw(self, key: str, default: Any) -> Any:
        return self._take(key, default)

    def table(self, key: str, default_empty: bool = False) -> Table:
        value = self._take(key, {} if default_empty else _REQUIRED)
        return Table(value, self._label(key))

    def array(self, key: str, parse: Callable[[Table], T], max_items: int) -> list[T]:
        value = self._take(key, _REQUIRED)
        if not isinstance(value, list) or not 0 < len(value) <= max_items:
            raise self.error(key, f"must be an array of 1..{max_items} tables")
        return [parse(Table(item, f"{self._label(key)}[{i}]")) for i, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


_REQUIRED: Final = object()
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def parse_file(path: Path, parse: Callable[[Table], T]) -> T:
    """Read a TOML file and parse it strictly, prefixing any error with the file name."""
    data = read_toml(path)
    try:
        return parse(Table(data, ""))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


# ---------------------------------------------------------------------------------------
# Listen addresses


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """`host:port` or `[v6]:port`."""
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not host:port")
        return cls(host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _host_port(table: Table, key: str) -> HostPort:
    text = table.text(key)
    try:
        return HostPort.parse(text)
    except ValueError as error:
        raise table.error(key, str(error)) from None


def _optional_host_port(table: Table, key: str) -> HostPort | None:
    return None if table.optional_text(key) is None else _host_port(table, key)


# ---------------------------------------------------------------------------------------
# Node config


@dataclass(frozen=True, slots=True)
class ChainSettings:
    """How this node reaches the settlement chain (`[chain]` in its config)."""

    url: str
    confirmations: int = 3
    start_block: int = 0  # the contract's deployment block: where the watcher starts
    poll_interval_s: float = 1.0
    takeover_s: float = 10.0  # checkpoint submission: the next member's turn after this

    def to_toml(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "confirmations": self.confirmations,
            "start_block": self.start_block,
            "poll_interval_ms": int(self.poll_interval_s * 1000),
            "takeover_ms": int(self.takeover_s * 1000),
        }


def _parse_chain(table: Table) -> ChainSettings:
    url = table.text("url", max_len=1024)
    if not url.startswith(("http://", "https://")):
        raise table.error("url", "must be an http(s) JSON-RPC URL")
    chain = ChainSettings(
        url=url,
        confirmations=table.integer("confirmations", 1, 1000, 3),
        start_block=table.integer("start_block", 0, 2**63, 0),
        poll_interval_s=table.integer("poll_interval_ms", 10, 600_000, 1000) / 1000,
        takeover_s=table.integer("takeover_ms", 100, 3_600_000, 10_000) / 1000,
    )
    table.done()
    return chain


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """The API's history file (`[index]` in the config; docs/OPERATIONS.md "Indexer").
    Retention is by block time: rows older than that many days are deleted."""

    file: Path | None = None  # None: index.sqlite in the data directory
    retention_days: int = 30  # trades, fills, closed orders
    money_retention_days: int = 365  # deposits, withdrawals, checkpoints
    candle_retention_days: int = 365

    def to_toml(self, rel: Callable[[Path], str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "retention_days": self.retention_days,
            "money_retention_days": self.money_retention_days,
            "candle_retention_days": self.candle_retention_days,
        }
        if self.file is not None:
            out["file"] = rel(self.file)
        return out


def _parse_index(table: Table, base: Path) -> IndexSettings:
    raw_file = table.optional_text("file")
    days = 100 * 365
    index = IndexSettings(
        file=None if raw_file is None else (base / raw_file).resolve(),
        retention_days=table.integer("retention_days", 1, days, 30),
        money_retention_days=table.integer("money_retention_days", 1, days, 365),
        candle_retention_days=table.integer("candle_retention_days", 1, days, 365),
    )
    table.done()
    return index


def _source_toml(
    settings: OracleSettings | VolSettings, rel: Callable[[Path], str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"source": settings.source}
    if settings.start:
        out["start"] = dict(settings.start)
    if settings.file is not None:
        out["file"] = rel(settings.file)
    if settings.http:
        out["http"] = {k: {"url": u, "field": f} for k, (u, f) in settings.http.items()}
    return out


@dataclass(frozen=True, slots=True)
class VolSettings:
    """Where this member's feeder reads implied vols (`[oracle.vols]`;
    docs/OPERATIONS.md): the same three kinds of source as prices, keyed by option
    series symbol, values as fractions a year ("0.55" for 55 %). Used only when genesis
    has option series; the simulated source starts at each series' genesis vol unless
    `start` names another."""

    source: str = "simulated"  # simulated | file | http
    start: dict[str, str] = field(default_factory=dict)  # simulated: series -> start vol
    file: Path | None = None  # file: a JSON object {series symbol: vol}
    http: dict[str, tuple[str, str]] = field(default_factory=dict)  # series -> (url, field)

    def to_toml(self, rel: Callable[[Path], str]) -> dict[str, Any]:
        return _source_toml(self, rel)


@dataclass(frozen=True, slots=True)
class OracleSettings:
    """Where this member's oracle feeder reads prices (`[oracle]`; docs/OPERATIONS.md),
    and vols (`[oracle.vols]`). Used only when genesis has perpetual markets."""

    source: str = "simulated"  # simulated | file | http
    interval_ms: int = 2_000
    seed: int = 0  # simulated: members with one seed see one price path
    start: dict[str, str] = field(default_factory=dict)  # simulated: symbol -> start price
    file: Path | None = None  # file: a JSON object {symbol: price}
    # http: market symbol -> (url, dotted field path of the price in the JSON answer)
    http: dict[str, tuple[str, str]] = field(default_factory=dict)
    vols: VolSettings = field(default_factory=VolSettings)

    def to_toml(self, rel: Callable[[Path], str]) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "interval_ms": self.interval_ms}
        if self.source == "simulated":
            out["seed"] = self.seed
        out.update((k, v) for k, v in _source_toml(self, rel).items() if k != "source")
        if self.vols != VolSettings():
            out["vols"] = self.vols.to_toml(rel)
        return out


SourceSettings = OracleSettings | VolSettings
ORACLE_SOURCES = ("simulated", "file", "http")
MAX_ORACLE_HTTP_MARKETS = 64
MAX_VOL = 10  # a year's vol as a fraction: the engine's MAX_VOL_E9


def _parse_source(
    table: Table, base: Path, what: str, bounds: Callable[[Decimal], bool]
) -> tuple[str, dict[str, str], Path | None, dict[str, tuple[str, str]]]:
    """source, start, file and http of an `[oracle]` or `[oracle.vols]` table."""
    source = table.choice("source", ORACLE_SOURCES, "simulated")
    raw_start = table.optional_raw("start", {})
    if not isinstance(raw_start, dict) or len(raw_start) > MAX_ORACLE_HTTP_MARKETS:
        raise table.error("start", f'must be a table of symbol = "{what}"')
    start: dict[str, str] = {}
    for symbol, value in raw_start.items():
        parsed = parse_price(value)
        if parsed is None or not bounds(parsed):
            raise table.error("start", f"{symbol}: {value!r} is not a valid {what}")
        start[str(symbol)] = str(value)
    file = None
    if source == "file" or table.optional_raw("file", None) is not None:
        file = (base / table.text("file", max_len=4096)).resolve()
    http: dict[str, tuple[str, str]] = {}
    raw_http = table.optional_raw("http", {})
    if not isinstance(raw_http, dict) or len(raw_http) > MAX_ORACLE_HTTP_MARKETS:
        raise table.error("http", "must be a table of symbol = {url, field}")
    for symbol in raw_http:
        market = table.table("http").table(str(symbol))
        url = market.text("url", max_len=2048)
        if not url.startswith(("http://", "https://")):
            raise market.error("url", "must be an http(s) URL")
        http[str(symbol)] = (url, market.text("field", "price", max_len=256))
        market.done()
    if source == "http" and not http:
        raise table.error("http", "source = http needs http.SYMBOL tables")
    return source, start, file, http


def _parse_oracle(table: Table, base: Path) -> OracleSettings:
    source, start, file, http = _parse_source(table, base, "positive decimal price", bool)
    interval_ms = table.integer("interval_ms", 200, 600_000, 2_000)
    seed = table.integer("seed", 0, 2**63, 0)
    vols = VolSettings()
    if table.optional_raw("vols", None) is not None:
        sub = table.table("vols")
        vols = VolSettings(*_parse_source(sub, base, "vol in (0, 10]", lambda v: v <= MAX_VOL))
        sub.done()
    table.done()
    return OracleSettings(source, interval_ms, seed, start, file, http, vols)


MAX_VERIFY_THREADS = 64


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def verify_threads_for(members_on_host: int) -> int:
    """Signature threads for each of `members_on_host` members sharing this host's
    cores: its share of them, or 0 (verify on the event loop) when that share is under
    two cores, where a thread adds hand-offs and GIL switches but no core."""
    share = usable_cores() // max(1, members_on_host)
    return min(share, MAX_VERIFY_THREADS) if share >= 2 else 0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str  # this node's member name in genesis
    genesis: Path
    data_dir: Path
    identity_key: Path
    settlement_key: Path
    consensus_listen: HostPort
    api_listen: HostPort
    metrics_listen: HostPort | None = None
    log_level: str = "info"
    # Where to dial a member instead of its genesis address (member name -> host:port):
    # a fault-injecting proxy in tests, or a NAT/tunnel in production. Identities are
    # still checked against genesis keys, so this cannot redirect trust, only packets.
    peer_addresses: dict[str, HostPort] = field(default_factory=dict)
    chain: ChainSettings | None = None  # None: no settlement loop (no deposits, checkpoints)
    # Threads that recover trader signatures beside the event loop; 0: on the loop
    # itself. None: one per core this process may use (none with a single core).
    # Members sharing a host share its cores: `committee init` writes cores // members.
    verify_threads: int | None = None
    # Committed blocks kept below the latest snapshot, for peers that catch up by log
    # (docs/OPERATIONS.md "Disk"); None: the runtime's default (NodeOptions).
    history_blocks: int | None = None
    index: IndexSettings = field(default_factory=IndexSettings)
    oracle: OracleSettings = field(default_factory=OracleSettings)
    # This member's share of the committee key for encrypted intents (genesis
    # [fairness]; docs/OPERATIONS.md): None, no decryption shares from this member.
    fairness_key: Path | None = None

    @property
    def index_file(self) -> Path:
        return self.index.file or self.data_dir / "index.sqlite"

    def to_toml(self, relative_to: Path | None = None) -> dict[str, Any]:
        """TOML-ready dict; paths are written relative to `relative_to` when given."""

        def rel(path: Path) -> str:
            if relative_to is None:
                return str(path)
            return _relative(path, relative_to)

        listen: dict[str, Any] = {
            "consensus": str(self.consensus_listen),
            "api": str(self.api_listen),
        }
        if self.metrics_listen is not None:
            listen["metrics"] = str(self.metrics_listen)
        extra: dict[str, Any] = {}
        if self.peer_addresses:
            extra["peer_addresses"] = {k: str(v) for k, v in self.peer_addresses.items()}
        if self.chain is not None:
            extra["chain"] = self.chain.to_toml()
        if self.verify_threads is not None:
            extra["verify_threads"] = self.verify_threads
        if self.history_blocks is not None:
            extra["history_blocks"] = self.history_blocks
        if self.index != IndexSettings():
            extra["index"] = self.index.to_toml(rel)
        if self.oracle != OracleSettings():
            extra["oracle"] = self.oracle.to_toml(rel)
        if self.fairness_key is not None:
            extra["fairness_key"] = rel(self.fairness_key)
        return {
            "name": self.name,
            "genesis": rel(self.genesis),
            "data_dir": rel(self.data_dir),
            "identity_key": rel(self.identity_key),
            "settlement_key": rel(self.settlement_key),
            "log_level": self.log_level,
            "listen": listen,
            **extra,
        }

    def write(self, path: Path) -> None:
        write_toml(path, self.to_toml(relative_to=path.parent))


def _relative(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


MIN_HISTORY_BLOCKS = 1_000  # at least a snapshot interval: peers a little behind use the log


def _parse_node_config(table: Table, base: Path) -> NodeConfig:
    def path(key: str) -> Path:
        return (base / table.text(key, max_len=4096)).resolve()

    listen = table.table("listen")
    peers_raw = table.optional_raw("peer_addresses", {})
    if not isinstance(peers_raw, dict) or len(peers_raw) > 256:
        raise table.error("peer_addresses", 'must be a table of member name = "host:port"')
    try:
        peers = {str(k): HostPort.parse(str(v)) for k, v in peers_raw.items()}
    except (ConfigError, ValueError) as exc:
        raise table.error("peer_addresses", str(exc)) from None
    config = NodeConfig(
        name=table.text("name", max_len=64),
        genesis=path("genesis"),
        data_dir=path("data_dir"),
        identity_key=path("identity_key"),
        settlement_key=path("settlement_key"),
        consensus_listen=_host_port(listen, "consensus"),
        api_listen=_host_port(listen, "api"),
        metrics_listen=_optional_host_port(listen, "metrics"),
        log_level=table.choice("log_level", LOG_LEVELS, "info"),
        peer_addresses=peers,
        chain=None
        if table.optional_raw("chain", None) is None
        else _parse_chain(table.table("chain")),
        verify_threads=None
        if table.optional_raw("verify_threads", None) is None
        else table.integer("verify_threads", 0, MAX_VERIFY_THREADS),
        history_blocks=None
        if table.optional_raw("history_blocks", None) is None
        else table.integer("history_blocks", MIN_HISTORY_BLOCKS, 1 << 40),
        index=IndexSettings()
        if table.optional_raw("index", None) is None
        else _parse_index(table.table("index"), base),
        oracle=OracleSettings()
        if table.optional_raw("oracle", None) is None
        else _parse_oracle(table.table("oracle"), base),
        fairness_key=None
        if table.optional_raw("fairness_key", None) is None
        else path("fairness_key"),
    )
    listen.done()
    table.done()
    return config


def load_node_config(path: Path) -> NodeConfig:
    return parse_file(path, lambda table: _parse_node_config(table, path.parent))


def first_duplicate(items: Iterable[T]) -> T | None:
    """The first item seen twice, or None."""
    seen: set[T] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None
