"""Where a member's oracle feeder reads prices (the operator's `[oracle]` config).

A source returns human prices (a Decimal of quote per base unit, as an exchange ticker
shows them) by market symbol; the feeder converts them to the engine's ticks. Three
kinds:

- `simulated`: a deterministic feed, a function of the wall time and a seed only, so
  every member of a localnet or test committee computes the same price at the same
  moment (what the median needs to be stable) while the price keeps moving: a slow
  sine wave plus a seeded step noise, around a start price per market.
- `file`: a JSON object {"BTC-PERP": "97000.5", ...} read at every observation (at most
  MAX_FILE_BYTES): an operator's own process writes it.
- `http`: one GET per market to a URL that returns JSON (a public exchange's ticker), the
  price at a dotted `field` path ("price", "data.last"), a string or a number; bounded
  by a timeout and MAX_HTTP_BYTES.

A source that fails (a timeout, a bad document, a missing market) returns no price for
that market: the feeder then leaves it out of the observation, and the engine's index
uses the other members' observations (it needs 2f + 1 fresh ones).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import trio

MAX_FILE_BYTES: Final = 64 * 1024
MAX_HTTP_BYTES: Final = 256 * 1024
HTTP_TIMEOUT_S: Final = 2.0


class PriceSource(Protocol):
    async def prices(self, now_ms: int) -> dict[str, Decimal]: ...


def parse_price(value: Any) -> Decimal | None:
    """A positive finite price from a JSON string or number; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() and price > 0 else None


@dataclass(slots=True)
class SimulatedSource:
    """start * (1 + amplitude·sin(2πt/period) + noise(seed, t // step)), rounded to
    8 decimals; the same on every member that has the same seed and start prices."""

    start: Mapping[str, Decimal]
    seed: int = 0
    amplitude: float = 0.02
    period_ms: int = 600_000
    noise: float = 0.002
    step_ms: int = 1_000

    async def prices(self, now_ms: int) -> dict[str, Decimal]:
        out = {}
        wave = self.amplitude * math.sin(2 * math.pi * (now_ms % self.period_ms) / self.period_ms)
        for symbol, start in self.start.items():
            key = f"{self.seed}/{symbol}/{now_ms // self.step_ms}".encode()
            unit = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
            factor = 1 + wave + self.noise * (2 * unit - 1)
            out[symbol] = (start * Decimal(repr(factor))).quantize(Decimal("1e-8"))
        return out


@dataclass(slots=True)
class FileSource:
    path: Path

    async def prices(self, now_ms: int) -> dict[str, Decimal]:
        def read() -> bytes:
            with self.path.open("rb") as f:
                return f.read(MAX_FILE_BYTES + 1)

        try:
            data = await trio.to_thread.run_sync(read)
        except OSError:
            return {}
        if len(data) > MAX_FILE_BYTES:
            return {}
        try:
            doc = json.loads(data)
        except ValueError:
            return {}
        if not isinstance(doc, dict):
            return {}
        out = {}
        for symbol, value in doc.items():
            price = parse_price(value)
            if price is not None:
                out[str(symbol)] = price
        return out


@dataclass(frozen=True, slots=True)
class HttpMarket:
    url: str
    field: str = "price"  # a dotted path into the JSON document


def pick(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


@dataclass(slots=True)
class HttpSource:
    markets: Mapping[str, HttpMarket]
    timeout_s: float = HTTP_TIMEOUT_S
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def _get(self, client: httpx.AsyncClient, market: HttpMarket) -> Decimal | None:
        try:
            async with client.stream("GET", market.url) as response:
                if response.status_code != 200:
                    return None
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_HTTP_BYTES:
                        return None
            return parse_price(pick(json.loads(body), market.field))
        except (httpx.HTTPError, ValueError):
            return None

    async def prices(self, now_ms: int) -> dict[str, Decimal]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        out: dict[str, Decimal] = {}
        client = self._client
        with trio.move_on_after(self.timeout_s * 2):
            async with trio.open_nursery() as nursery:

                async def one(symbol: str, market: HttpMarket) -> None:
                    price = await self._get(client, market)
                    if price is not None:
                        out[symbol] = price

                for symbol, market in self.markets.items():
                    nursery.start_soon(one, symbol, market)
        return out
