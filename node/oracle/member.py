"""The oracle inside a running member: what member.py asks of it.

- `run`: the feeder task (only with perpetual markets in genesis; it also observes vols
  when genesis has option series);
- `on_peer`: a peer's "o" message (its own observation, of prices or of vols:
  rate-limited, time-checked, signature-checked, then pooled);
- `for_block`: the observations a leader puts at the front of its block;
- `check_block`: a voter's check of a proposal's observations (node/oracle/observation.py
  `block_observations`);
- `engine_entry`: the engine's entry for a committed observation.

A member without perpetual markets in genesis runs no feeder, proposes no observation
and votes against a block that carries one; without option series, the same for vol
observations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import trio

from consensus.crypto import Ed25519Scheme, Signer
from matching.config import Genesis, Market
from matching.options import MAX_VOL_E9, VOL_SCALE
from node.api.query import KNOWN_DECIMALS
from node.api.ratelimit import NO_WAIT, RateLimit, TokenBuckets
from node.config import OracleSettings, SourceSettings
from node.net.messages import PeerProtocolError
from node.oracle.feeder import Feeder, ObservationPool, VolFeed
from node.oracle.observation import (
    OBSERVATION_SKEW_MS,
    OBSERVATION_TAGS,
    TAG_ORACLE,
    TAG_VOLS,
    VOLS,
    Observation,
    block_observations,
    decode_observation,
)
from node.oracle.sources import FileSource, HttpMarket, HttpSource, PriceSource, SimulatedSource

ORACLE_TAG: Final = bytes((TAG_ORACLE,))
VOLS_TAG: Final = bytes((TAG_VOLS,))
# A feeder sends one of each kind every interval_ms (>= 200 ms).
PEER_OBSERVATIONS_PER_S: Final = 8.0


class MemberOracle:
    def __init__(
        self,
        *,
        me: int,
        chain_id: bytes,
        public_keys: tuple[bytes, ...],
        member_addresses: tuple[bytes, ...],
        signer: Signer,
        now_ms: Callable[[], int],
        broadcast: Callable[[list[Any]], None],
        source: PriceSource | None,
        to_ticks: Mapping[str, Callable[[Decimal], tuple[int, int] | None]],
        interval_ms: int,
        vols: VolFeed | None = None,
    ) -> None:
        self._me = me
        self._chain_id = chain_id
        self._keys = public_keys
        self._addresses = member_addresses
        self._now_ms = now_ms
        self._broadcast = broadcast
        self._scheme = Ed25519Scheme()
        self.pool = ObservationPool(len(public_keys))
        self.enabled = source is not None
        self.vols_enabled = source is not None and vols is not None
        self._peers = TokenBuckets(
            RateLimit(PEER_OBSERVATIONS_PER_S, burst=PEER_OBSERVATIONS_PER_S),
            max_keys=len(public_keys),
        )
        self.counters = {"observations_sent": 0, "observations_taken": 0, "observations_late": 0}
        self.feeder = (
            None
            if source is None
            else Feeder(
                member=me,
                chain_id=chain_id,
                signer=signer,
                source=source,
                to_ticks=to_ticks,
                now_ms=now_ms,
                publish=self._publish,
                interval_ms=interval_ms,
                vols=vols,
            )
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.feeder is None:
            task_status.started()
            return
        await self.feeder.run(task_status=task_status)

    def _publish(self, observation: Observation) -> None:
        self.pool.offer(observation)
        self._broadcast(["o", observation.entry()])
        self.counters["observations_sent"] += 1

    def on_peer(self, peer: int, observation: Observation) -> None:
        """A peer's observation: its own only, within the skew of our clock, signed."""
        if not self.enabled:
            raise PeerProtocolError("an oracle observation, but genesis has no perp market")
        if observation.kind is VOLS and not self.vols_enabled:
            raise PeerProtocolError("a vol observation, but genesis has no option series")
        if observation.member != peer:
            raise PeerProtocolError(f"observation of member {observation.member} from {peer}")
        if self._peers.take(peer, 1, trio.current_time()) != NO_WAIT:
            raise PeerProtocolError("oracle observations faster than a feeder sends them")
        if abs(observation.observed_ms - self._now_ms()) > OBSERVATION_SKEW_MS:
            # Its clock or ours is off (the committee clock reports which): not a fault.
            self.counters["observations_late"] += 1
            return
        if not observation.verify(self._chain_id, self._keys[peer], self._scheme):
            raise PeerProtocolError("oracle observation with a bad signature")
        if self.pool.offer(observation):
            self.counters["observations_taken"] += 1

    def for_block(self) -> list[bytes]:
        """Observation entries for the front of our next block."""
        if not self.enabled:
            return []
        # Half the skew a voter accepts: room for the proposal's own delay.
        fresh = self.pool.take(self._now_ms(), OBSERVATION_SKEW_MS // 2)
        return [o.entry() for o in fresh]

    def check_block(self, entries: tuple[bytes, ...], timestamp_ms: int) -> str | None:
        if not self.enabled:
            if any(e[:1] in OBSERVATION_TAGS for e in entries):
                return "an oracle observation, but genesis has no perp market"
            return None
        if not self.vols_enabled and any(e[:1] == VOLS_TAG for e in entries):
            return "a vol observation, but genesis has no option series"
        bad = block_observations(entries, timestamp_ms, self._keys, self._chain_id, self._scheme)
        if bad is None:
            # Carried by this proposal: our next block need not carry them again (a
            # certified chain rarely holds one observation twice; the engine would only
            # record the same price again).
            for entry in entries:
                if entry[:1] not in OBSERVATION_TAGS:
                    break
                observation = decode_observation(entry)
                self.pool.carried(observation.member, observation.observed_ms, observation.kind)
        return bad

    def status(self) -> dict[str, Any]:
        """For /v1/status: whether a feeder runs, its counts, each member's newest
        observation time (ms) as this member's pool holds it."""
        feeder = self.feeder
        return {
            "enabled": self.enabled,
            "interval_ms": None if feeder is None else feeder.interval_ms,
            "observations": 0 if feeder is None else feeder.observations,
            "source_failures": 0 if feeder is None else feeder.failures,
            **self.counters,
            "latest_observed_ms": [
                None if o is None else o.observed_ms for o in self.pool.latest()
            ],
            "vols": {
                "enabled": self.vols_enabled,
                "observations": 0 if feeder is None else feeder.vol_observations,
                "source_failures": 0 if feeder is None else feeder.vol_failures,
                "latest_observed_ms": [
                    None if o is None else o.observed_ms for o in self.pool.latest(VOLS)
                ],
            },
        }

    def learn_series(self, markets: tuple[Market, ...]) -> int:
        """Observe the vols of option series listed after genesis too (docs/MATCHING.md,
        "Series by admin action"): each series the feeder does not observe yet joins its
        vol feed by symbol (a simulated source starts it at its listing's vol, a file
        source reads it under its symbol, an http source only if `[oracle.vols.http]`
        names it). Idempotent; the count of series added."""
        feeder = self.feeder
        feed = None if feeder is None else feeder.vols
        if feed is None or not isinstance(feed.to_vol_e9, dict):
            return 0
        added = 0
        for market in markets:
            if market.option is None or market.symbol in feed.to_vol_e9:
                continue
            feed.to_vol_e9[market.symbol] = vol_converter(market.id)
            source = feed.source
            if isinstance(source, SimulatedSource) and isinstance(source.start, dict):
                source.start.setdefault(market.symbol, Decimal(market.option.vol_e9) / VOL_SCALE)
            added += 1
        return added

    def engine_entry(self, raw: bytes) -> dict[str, Any]:
        """The engine's entry of a committed observation (checked by 2f + 1 voters)."""
        observation = decode_observation(raw)
        return observation.engine_entry(self._addresses[observation.member])


def price_converter(
    market_id: int, lot_size: int, tick_size: int, quote_exponent: int, base_decimals: int
) -> Callable[[Decimal], tuple[int, int] | None]:
    """Human price (quote per 1.0 of the underlying) -> (market id, ticks): the price
    per lot in quote engine units divided by the tick size, rounded to the nearest
    (the engine's oracle entry counts ticks); None for a price that rounds to nothing."""

    def convert(price: Decimal) -> tuple[int, int] | None:
        per_lot = price * lot_size * Decimal(10) ** (quote_exponent - base_decimals)
        ticks = int((per_lot / tick_size).to_integral_value())
        return None if ticks <= 0 else (market_id, ticks)

    return convert


def oracle_source(
    settings: OracleSettings, exchange: Genesis
) -> tuple[PriceSource | None, dict[str, Callable[[Decimal], tuple[int, int] | None]]]:
    """The configured price source and, per perpetual market symbol, its converter to
    ticks; (None, {}) when genesis has no perpetual market."""
    perps = exchange.perp_markets
    if not perps:
        return None, {}
    assets = {a.id: a for a in exchange.assets}
    to_ticks = {}
    for market in perps:
        assert market.perp is not None
        quote = assets[market.quote]
        decimals = KNOWN_DECIMALS.get(quote.symbol)
        if decimals is None:
            raise ValueError(f"{market.symbol}: the decimals of {quote.symbol} are not known")
        quote_exponent = decimals - (len(str(quote.unit)) - 1)
        to_ticks[market.symbol] = price_converter(
            market.id, market.lot_size, market.tick_size, quote_exponent, market.perp.base_decimals
        )
    if settings.source == "simulated":
        missing = sorted(set(to_ticks) - set(settings.start))
        if missing:
            raise ValueError(
                f"[oracle] source = simulated needs a start price for {', '.join(missing)} "
                '(start = { "BTC-PERP" = "97000" })'
            )
    return _source(settings, settings.seed, {}), to_ticks


def vol_converter(market_id: int) -> Callable[[Decimal], tuple[int, int] | None]:
    """Human vol (0.55 for 55 % a year) -> (series id, vol_e9), rounded to the nearest;
    None outside the engine's 1..MAX_VOL_E9."""

    def convert(vol: Decimal) -> tuple[int, int] | None:
        vol_e9 = int((vol * VOL_SCALE).to_integral_value())
        return (market_id, vol_e9) if 0 < vol_e9 <= MAX_VOL_E9 else None

    return convert


def vol_feed(settings: OracleSettings, exchange: Genesis) -> VolFeed | None:
    """The configured vol source (`[oracle.vols]`) and, per option series symbol, its
    converter to vol_e9; None when genesis has no option series. The simulated source
    starts each series at its genesis `vol_e9` unless `[oracle.vols] start` says
    otherwise."""
    series = exchange.option_markets
    if not series:
        return None
    to_vol_e9 = {}
    defaults = {}
    for market in series:
        assert market.option is not None
        to_vol_e9[market.symbol] = vol_converter(market.id)
        defaults[market.symbol] = Decimal(market.option.vol_e9) / VOL_SCALE
    return VolFeed(_source(settings.vols, settings.seed, defaults), to_vol_e9)


def _source(settings: SourceSettings, seed: int, defaults: dict[str, Decimal]) -> PriceSource:
    if settings.source == "file":
        assert settings.file is not None
        return FileSource(settings.file)
    if settings.source == "http":
        return HttpSource({s: HttpMarket(url, field) for s, (url, field) in settings.http.items()})
    start = {**defaults, **{s: Decimal(p) for s, p in settings.start.items()}}
    return SimulatedSource(start, seed=seed)
