"""A member's oracle feeder and the pool of observations a leader proposes from.

The feeder runs beside the member (`Node.run`): every `interval_ms` it reads its price
source, converts the prices to ticks, signs an observation with the member's identity
key, keeps it in the pool and sends it to every peer; with option series in genesis it
does the same with its vol source (implied vols per series, to vol_e9). Peers'
observations arrive through the peer boundary ("o" messages) and enter the pool once
their signature and time are checked. The pool keeps one observation of each kind per
member (the newest), so it is bounded by twice the committee's size; a leader takes each
observation it has not proposed yet into the front of its next block
(node/runtime/member.py `_fill`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import structlog
import trio

from consensus.crypto import Signer
from node.oracle.observation import (
    MAX_OBSERVED_MARKETS,
    PRICES,
    VOLS,
    Kind,
    Observation,
    sign_observation,
)
from node.oracle.sources import PriceSource

log = structlog.get_logger("seqnet.oracle")

DEFAULT_INTERVAL_MS: Final = 2_000


_KINDS: Final = (PRICES, VOLS)  # the order a block carries them in


class ObservationPool:
    """The newest observation of each kind of each member, and which ones this member
    proposed."""

    def __init__(self, members: int) -> None:
        self._latest: dict[int, list[Observation | None]] = {
            k.tag: [None] * members for k in _KINDS
        }
        # observed_ms last put in our block, per kind and member
        self._proposed: dict[int, list[int]] = {k.tag: [-1] * members for k in _KINDS}

    def offer(self, observation: Observation) -> bool:
        """Keep `observation` if it is its member's newest of its kind; True if kept."""
        latest = self._latest[observation.kind.tag]
        current = latest[observation.member]
        if current is not None and current.observed_ms >= observation.observed_ms:
            return False
        latest[observation.member] = observation
        return True

    def take(self, now_ms: int, max_age_ms: int) -> list[Observation]:
        """Observations not proposed by us yet and not older than `max_age_ms`, prices
        then vols, by member; they count as proposed from now on."""
        out = []
        for kind in _KINDS:
            proposed = self._proposed[kind.tag]
            for member, observation in enumerate(self._latest[kind.tag]):
                if observation is None or observation.observed_ms <= proposed[member]:
                    continue
                if now_ms - observation.observed_ms > max_age_ms:
                    continue
                proposed[member] = observation.observed_ms
                out.append(observation)
        return out

    def carried(self, member: int, observed_ms: int, kind: Kind = PRICES) -> None:
        """A block we saw (a valid proposal) carries this observation: no later block of
        ours needs to carry it again."""
        proposed = self._proposed[kind.tag]
        if observed_ms > proposed[member]:
            proposed[member] = observed_ms

    def latest(self, kind: Kind = PRICES) -> list[Observation | None]:
        return list(self._latest[kind.tag])


@dataclass(frozen=True, slots=True)
class VolFeed:
    """The feeder's vol half: a source of human vols (0.55 = 55 %) by series symbol and,
    per series symbol, its converter to (market id, vol_e9)."""

    source: PriceSource
    to_vol_e9: Mapping[str, Callable[[Decimal], tuple[int, int] | None]]


class Feeder:
    def __init__(
        self,
        *,
        member: int,
        chain_id: bytes,
        signer: Signer,
        source: PriceSource,
        to_ticks: Mapping[str, Callable[[Decimal], tuple[int, int] | None]],
        now_ms: Callable[[], int],
        publish: Callable[[Observation], None],
        interval_ms: int = DEFAULT_INTERVAL_MS,
        vols: VolFeed | None = None,
    ) -> None:
        self._member = member
        self._chain_id = chain_id
        self._signer = signer
        self._source = source
        self._to_ticks = to_ticks  # market symbol -> (human price -> (market id, ticks))
        self._now_ms = now_ms
        self._publish = publish
        self.interval_ms = interval_ms
        self._vols = vols
        self.observations = 0
        self.failures = 0
        self.vol_observations = 0
        self.vol_failures = 0
        # the next slice of markets / series, when they are more than one observation holds
        self._price_slice = 0
        self._vol_slice = 0

    @property
    def vols(self) -> VolFeed | None:
        """The vol half (its series grow with listings: MemberOracle.learn_series)."""
        return self._vols

    async def observe_once(self) -> Observation | None:
        """A price observation, published (None if the source gave no usable price).
        Markets beyond MAX_OBSERVED_MARKETS are observed in turn, as for vols."""
        now = self._now_ms()
        values = await _read(self._source, self._to_ticks, now, "price")
        if values is None:
            self.failures += 1
            return None
        values = _slice(values, self._price_slice)
        self._price_slice += 1
        observation = sign_observation(self._signer, self._chain_id, self._member, now, values)
        self.observations += 1
        self._publish(observation)
        return observation

    async def observe_vols_once(self) -> Observation | None:
        """A vol observation, published (None without a vol feed, or if its source gave
        no usable vol). An observation holds at most MAX_OBSERVED_MARKETS series: with
        more, each interval takes the next slice of them by market id, in turn, so every
        series is observed once every ceil(n / 64) intervals (keep that under the
        genesis `vol_max_age_ms`)."""
        feed = self._vols
        if feed is None:
            return None
        now = self._now_ms()
        values = await _read(feed.source, feed.to_vol_e9, now, "vol")
        if values is None:
            self.vol_failures += 1
            return None
        values = _slice(values, self._vol_slice)
        self._vol_slice += 1
        signer, chain_id, member = self._signer, self._chain_id, self._member
        observation = sign_observation(signer, chain_id, member, now, values, VOLS)
        self.vol_observations += 1
        self._publish(observation)
        return observation

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.observe_once()
            await self.observe_vols_once()
            await trio.sleep(self.interval_ms / 1000)


def _slice(values: dict[int, int], turn: int) -> dict[int, int]:
    """All of `values` if one observation holds them; else slice `turn` (cyclic) of them
    by market id, MAX_OBSERVED_MARKETS at a time."""
    if len(values) <= MAX_OBSERVED_MARKETS:
        return values
    ordered = sorted(values)
    slices = -(-len(ordered) // MAX_OBSERVED_MARKETS)
    start = turn % slices * MAX_OBSERVED_MARKETS
    return {m: values[m] for m in ordered[start : start + MAX_OBSERVED_MARKETS]}


async def _read(
    source: PriceSource,
    convert_by_symbol: Mapping[str, Callable[[Decimal], tuple[int, int] | None]],
    now_ms: int,
    what: str,
) -> dict[int, int] | None:
    """The source's values converted to {market id: engine value}; None (logged) if the
    source failed or gave nothing usable."""
    try:
        human = await source.prices(now_ms)
    except Exception as exc:  # a source is the operator's code or a remote service
        log.warning(f"oracle {what} source failed", error=str(exc))
        return None
    values: dict[int, int] = {}
    for symbol, convert in convert_by_symbol.items():
        value = human.get(symbol)
        if value is None:
            continue
        converted = convert(value)
        if converted is not None:
            values[converted[0]] = converted[1]
    if not values:
        markets = sorted(convert_by_symbol)
        log.warning(f"oracle {what} source gave no usable {what}", markets=markets)
        return None
    return values
