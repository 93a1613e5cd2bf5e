"""A member's oracle feeder and the pool of observations a leader proposes from.

The feeder runs beside the member (`Node.run`): every `interval_ms` it reads its price
source, converts the prices to ticks, signs an observation with the member's identity
key, keeps it in the pool and sends it to every peer. Peers' observations arrive through
the peer boundary ("o" messages) and enter the pool once their signature and time are
checked. The pool keeps one observation per member (the newest), so it is bounded by the
committee's size; a leader takes each observation it has not proposed yet into the front
of its next block (node/runtime/member.py `_fill`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final

import structlog
import trio

from consensus.crypto import Signer
from node.oracle.observation import Observation, sign_observation
from node.oracle.sources import PriceSource

log = structlog.get_logger("seqnet.oracle")

DEFAULT_INTERVAL_MS: Final = 2_000


class ObservationPool:
    """The newest observation of each member, and which ones this member proposed."""

    def __init__(self, members: int) -> None:
        self._latest: list[Observation | None] = [None] * members
        self._proposed: list[int] = [-1] * members  # observed_ms last put in our block

    def offer(self, observation: Observation) -> bool:
        """Keep `observation` if it is its member's newest; True if kept."""
        current = self._latest[observation.member]
        if current is not None and current.observed_ms >= observation.observed_ms:
            return False
        self._latest[observation.member] = observation
        return True

    def take(self, now_ms: int, max_age_ms: int) -> list[Observation]:
        """Observations not proposed by us yet and not older than `max_age_ms`, by member;
        they count as proposed from now on."""
        out = []
        for member, observation in enumerate(self._latest):
            if observation is None or observation.observed_ms <= self._proposed[member]:
                continue
            if now_ms - observation.observed_ms > max_age_ms:
                continue
            self._proposed[member] = observation.observed_ms
            out.append(observation)
        return out

    def carried(self, member: int, observed_ms: int) -> None:
        """A block we saw (a valid proposal) carries this observation: no later block of
        ours needs to carry it again."""
        if observed_ms > self._proposed[member]:
            self._proposed[member] = observed_ms

    def latest(self) -> list[Observation | None]:
        return list(self._latest)


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
    ) -> None:
        self._member = member
        self._chain_id = chain_id
        self._signer = signer
        self._source = source
        self._to_ticks = to_ticks  # market symbol -> (human price -> (market id, ticks))
        self._now_ms = now_ms
        self._publish = publish
        self.interval_ms = interval_ms
        self.observations = 0
        self.failures = 0

    async def observe_once(self) -> Observation | None:
        now = self._now_ms()
        try:
            prices = await self._source.prices(now)
        except Exception as exc:  # a source is the operator's code or a remote service
            self.failures += 1
            log.warning("oracle source failed", error=str(exc))
            return None
        ticks: dict[int, int] = {}
        for symbol, convert in self._to_ticks.items():
            price = prices.get(symbol)
            if price is None:
                continue
            converted = convert(price)
            if converted is not None:
                ticks[converted[0]] = converted[1]
        if not ticks:
            self.failures += 1
            log.warning("oracle source gave no usable price", markets=sorted(self._to_ticks))
            return None
        observation = sign_observation(self._signer, self._chain_id, self._member, now, ticks)
        self.observations += 1
        self._publish(observation)
        return observation

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.observe_once()
            await trio.sleep(self.interval_ms / 1000)
