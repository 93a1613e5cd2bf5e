"""The trader client: sign locally, send to any node, read back (docs/API.md, SDK).

`Client` is async (trio; httpx runs on it through anyio). `SyncClient`
(seqnet_sdk/sync.py) wraps it for plain scripts. Intents are signed here with the
account's key or an approved agent's (`account=` names the account an agent trades
for); the node never sees a key. Prices and sizes are human decimals converted exactly
to ticks and lots with the market's metadata (seqnet_sdk/units.py); integers already in
engine units can be given with `price_ticks=` / `size_units=`.

By default every call waits until its intents are committed (`wait=True`) and returns
one `IntentResult` per intent; a result with status `rejected` carries the engine's
code (insufficient_balance, post_only_would_cross, …). Transport and request errors
raise `ApiError`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx
import trio

from node.fairness.threshold import ThresholdPublicKey
from node.intents import (
    Domain,
    address_of_private_key,
    format_address,
    intent_to_json,
    parse_address,
    place_action,
    sign_intent,
)
from seqnet_sdk.encrypted import encrypt_action, parse_committee_key
from seqnet_sdk.stream import Stream
from seqnet_sdk.units import (
    MarketInfo,
    Markets,
    Number,
    candle_view,
    margin_decimals,
    stats_decimals,
    with_decimals,
)

Side = Literal["buy", "sell"]
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_BATCH: Final = 1000


class ApiError(Exception):
    """A request the node refused as a whole (4xx/5xx), or a node that cannot be reached."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class IntentResult:
    id: str | None
    status: str  # accepted | committed | rejected | timeout
    code: str | None = None
    message: str | None = None
    height: int | None = None
    oid: int | None = None  # a committed order's id, when the node knows it
    withdrawal_id: int | None = None  # a committed withdrawal's id

    @property
    def ok(self) -> bool:
        return self.status in ("accepted", "committed")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> IntentResult:
        return cls(
            raw.get("id"),
            raw["status"],
            raw.get("code"),
            raw.get("message"),
            raw.get("height"),
            raw.get("oid"),
            raw.get("withdrawal_id"),
        )


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a history list, most recent first. Each item carries the node's
    integers and their exact Decimals (`price_decimal`, `size_decimal`, …:
    `units.with_decimals`). `next_cursor`: pass it as `cursor` for the next (older)
    page; None when the range holds no more."""

    items: list[dict[str, Any]]
    next_cursor: str | None


# History lists: name -> (path template, answer key, scope: "market" or "account").
HISTORY: Final = {
    "trades": ("/v1/markets/{}/trades", "trades", "market"),
    "fills": ("/v1/accounts/{}/fills", "fills", "account"),
    "orders": ("/v1/accounts/{}/history", "orders", "account"),
    "deposits": ("/v1/accounts/{}/deposits", "deposits", "account"),
    "withdrawals": ("/v1/accounts/{}/withdrawals", "withdrawals", "account"),
    # Perpetual futures
    "funding": ("/v1/accounts/{}/funding", "funding", "account"),
    "funding_rates": ("/v1/markets/{}/funding", "funding", "market"),
    "liquidations": ("/v1/accounts/{}/liquidations", "liquidations", "account"),
    "market_liquidations": ("/v1/markets/{}/liquidations", "liquidations", "market"),
}
CLAIM_POLL_S: Final = 0.5


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        key = bytes.fromhex(key.removeprefix("0x"))
    if len(key) != 32:
        raise ValueError("a private key is 32 bytes (64 hex digits)")
    return key


def _address_bytes(address: bytes | str) -> bytes:
    return parse_address(address) if isinstance(address, str) else address


class Client:
    """One account on one node. `async with Client(url, key) as client: ...`"""

    def __init__(
        self,
        url: str,
        private_key: bytes | str,
        *,
        account: bytes | str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = _key_bytes(private_key)
        self.signer = address_of_private_key(self._key)
        self.account = self.signer if account is None else _address_bytes(account)
        self.wait = wait
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s + 5)
        self._domain: Domain | None = None
        self._markets: Markets | None = None
        self._committee_key: tuple[ThresholdPublicKey, int] | None = None
        self._last_nonce = 0

    @property
    def address(self) -> str:
        return format_address(self.account)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing

    async def _get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self._http.get(path, params=query)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"{self.url}: {exc}") from exc
        return _body(response)

    async def domain(self) -> Domain:
        if self._domain is None:
            raw = await self._get("/v1/domain")
            self._domain = Domain(raw["chain_id"], parse_address(raw["verifying_contract"]))
        return self._domain

    async def committee_key(self, *, refresh: bool = False) -> dict[str, Any]:
        """GET /v1/fairness/key: the committee key for encrypted intents (hex of its
        PROTOCOL.md §10.1 bytes, key_id, t, n, epoch). ApiError `no_committee_key` when
        the committee takes none."""
        raw = await self._get("/v1/fairness/key")
        if raw.get("status") == "pending":  # the members' DKG has not made a key yet
            raise ApiError(404, "no_committee_key", "the committee key is pending (DKG)")
        key = parse_committee_key(raw["committee_key"])
        if "0x" + key.key_id.hex() != raw["key_id"]:
            raise ApiError(0, "bad_committee_key", "the key's id does not match its bytes")
        self._committee_key = (key, raw["epoch"])
        return dict(raw)

    async def _sealing_key(self) -> tuple[ThresholdPublicKey, int]:
        if self._committee_key is None:
            await self.committee_key()
        assert self._committee_key is not None
        return self._committee_key

    async def markets(self, *, refresh: bool = False) -> Markets:
        if self._markets is None or refresh:
            self._markets = Markets.from_json(await self._get("/v1/markets"))
        return self._markets

    async def _market(self, market: int | str) -> MarketInfo:
        """A market by id or symbol. One the cached list lacks refreshes it once: the
        committee lists option series after genesis (docs/MATCHING.md, "Series by
        admin action")."""
        try:
            return (await self.markets()).market(market)
        except KeyError:
            return (await self.markets(refresh=True)).market(market)

    def _nonce(self) -> int:
        """Millisecond time, strictly increasing per client (PROTOCOL.md §4.3)."""
        self._last_nonce = max(time.time_ns() // 1_000_000, self._last_nonce + 1)
        return self._last_nonce

    async def submit(
        self,
        actions: list[dict[str, Any]],
        *,
        wait: bool | None = None,
        encrypted: bool = False,
    ) -> list[IntentResult]:
        """Sign each action (§2 form, engine integers) and send them as one batch.
        `encrypted`: seal each to the committee key (PROTOCOL.md §10) and post the
        envelopes to /v1/intents/encrypted; no member reads them before they are
        ordered. A result's `id` is then the envelope's id."""
        if not 1 <= len(actions) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} actions")
        domain = await self.domain()
        if encrypted:
            return await self._submit_encrypted(actions, domain, wait)
        intents = [
            intent_to_json(sign_intent(self._key, self.account, self._nonce(), a, domain))
            for a in actions
        ]
        return await self._post_batch("/v1/intents", {"intents": intents}, wait)

    async def _post_batch(
        self, path: str, body: dict[str, Any], wait: bool | None
    ) -> list[IntentResult]:
        wait = self.wait if wait is None else wait
        params: dict[str, str | int] = {}
        if wait:
            params = {"wait": "committed", "timeout_ms": int(self.timeout_s * 1000)}
        try:
            response = await self._http.post(path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"{self.url}: {exc}") from exc
        return [IntentResult.from_json(r) for r in _body(response)["results"]]

    async def _submit_encrypted(
        self, actions: list[dict[str, Any]], domain: Domain, wait: bool | None
    ) -> list[IntentResult]:
        """Seal and post; envelopes refused `wrong_epoch` at intake (the committee made a
        new key since we read ours: none of them was admitted) are sealed again to the
        new key and posted once more."""
        results = await self._seal_and_post(actions, domain, wait)
        stale = [i for i, r in enumerate(results) if r.code == "wrong_epoch" and r.height is None]
        if stale:
            _, old_epoch = await self._sealing_key()
            await self.committee_key(refresh=True)
            _, epoch = await self._sealing_key()
            if epoch != old_epoch:
                again = await self._seal_and_post([actions[i] for i in stale], domain, wait)
                for i, result in zip(stale, again, strict=True):
                    results[i] = result
        return results

    async def _seal_and_post(
        self, actions: list[dict[str, Any]], domain: Domain, wait: bool | None
    ) -> list[IntentResult]:
        key, epoch = await self._sealing_key()
        envelopes = [
            "0x"
            + encrypt_action(self._key, self.account, self._nonce(), a, domain, key, epoch).hex()
            for a in actions
        ]
        return await self._post_batch("/v1/intents/encrypted", {"envelopes": envelopes}, wait)

    async def _one(
        self, action: dict[str, Any], wait: bool | None, encrypted: bool = False
    ) -> IntentResult:
        return (await self.submit([action], wait=wait, encrypted=encrypted))[0]

    # ------------------------------------------------------------------ actions

    async def place_action(
        self,
        market: int | str,
        side: Side,
        size: Number | None = None,
        price: Number | None = None,
        *,
        kind: Literal["limit", "market"] = "limit",
        tif: Literal["gtc", "ioc", "fok", "post"] | None = None,
        cloid: int | None = None,
        expires_ms: int | None = None,
        reduce_only: bool = False,
        price_ticks: int | None = None,
        size_units: int | None = None,
    ) -> dict[str, Any]:
        """The §2 `place` action; decimals converted exactly (OffGrid if not on the grid)."""
        info = await self._market(market)
        if (size is None) == (size_units is None):
            raise ValueError("give exactly one of size and size_units")
        if (price is None) == (price_ticks is None):
            raise ValueError("give exactly one of price and price_ticks (a market order's limit)")
        ticks = price_ticks if price is None else info.price_to_ticks(price)
        units = size_units if size is None else info.size_to_units(size)
        assert ticks is not None and units is not None  # exactly one of each, checked above
        return place_action(
            info.id,
            side,
            ticks,
            units,
            kind=kind,
            tif=tif,
            reduce_only=reduce_only,
            cloid=cloid,
            expires_ms=expires_ms,
        )

    async def place(
        self,
        market: int | str,
        side: Side,
        size: Number | None = None,
        price: Number | None = None,
        *,
        wait: bool | None = None,
        encrypted: bool = False,
        **options: Any,
    ) -> IntentResult:
        """Place one order, e.g. `await client.place("ETH-USDC", "buy", "0.5", "3000.25")`;
        `encrypted=True` seals it to the committee key until it is ordered."""
        action = await self.place_action(market, side, size, price, **options)
        return await self._one(action, wait, encrypted)

    async def cancel(
        self, market: int | str, oid: int, *, wait: bool | None = None, encrypted: bool = False
    ) -> IntentResult:
        info = await self._market(market)
        action = {"type": "cancel", "market": info.id, "oid": oid}
        return await self._one(action, wait, encrypted)

    async def cancel_by_cloid(
        self,
        market: int | str,
        cloid: int,
        *,
        wait: bool | None = None,
        encrypted: bool = False,
    ) -> IntentResult:
        info = await self._market(market)
        action = {"type": "cancel_cloid", "market": info.id, "cloid": cloid}
        return await self._one(action, wait, encrypted)

    async def cancel_all(
        self, market: int | str | None = None, *, wait: bool | None = None
    ) -> IntentResult:
        market_id = None if market is None else (await self._market(market)).id
        return await self._one({"type": "cancel_all", "market": market_id}, wait)

    async def modify(
        self,
        market: int | str,
        oid: int,
        size: Number,
        price: Number,
        *,
        wait: bool | None = None,
    ) -> IntentResult:
        """Cancel-replace keeping oid/cloid/expiry (priority kept only when the price is
        unchanged and the size does not grow)."""
        info = await self._market(market)
        action = {
            "type": "modify",
            "market": info.id,
            "oid": oid,
            "price": info.price_to_ticks(price),
            "size": info.size_to_units(size),
        }
        return await self._one(action, wait)

    async def batch(
        self, actions: list[dict[str, Any]], *, wait: bool | None = None
    ) -> list[IntentResult]:
        """Several actions in one request (build places with `place_action`)."""
        return await self.submit(actions, wait=wait)

    async def approve_agent(
        self, agent: bytes | str, name: str, *, wait: bool | None = None
    ) -> IntentResult:
        """Let `agent` trade (never withdraw) for this account; sign with the account key."""
        action = {"type": "approve_agent", "agent": _address_bytes(agent), "name": name}
        return await self._one(action, wait)

    async def revoke_agent(self, agent: bytes | str, *, wait: bool | None = None) -> IntentResult:
        """Withdraw `agent`'s right to trade for this account (its intents not yet
        executed are refused; the account's orders stay); sign with the account key."""
        action = {"type": "revoke_agent", "agent": _address_bytes(agent)}
        return await self._one(action, wait)

    async def withdraw(
        self, asset: int | str, amount: Number, *, wait: bool | None = None
    ) -> IntentResult:
        """Debit `amount` (human units) now; claim it on chain once a checkpoint lands
        (`wait_claimable(result.withdrawal_id)` gives the call)."""
        info = (await self.markets()).asset(asset)
        action = {"type": "withdraw", "asset": info.id, "amount": info.to_units(amount)}
        return await self._one(action, wait)

    async def set_leverage(
        self,
        market: int | str,
        leverage: int,
        *,
        isolated: bool = False,
        wait: bool | None = None,
    ) -> IntentResult:
        """A perp market's leverage (1..max_leverage) and margin mode (cross or isolated;
        the mode changes only without a position or open orders there)."""
        info = await self._market(market)
        action = {"type": "set_leverage", "market": info.id, "leverage": leverage,
                  "isolated": isolated}  # fmt: skip
        return await self._one(action, wait)

    async def add_margin(
        self, market: int | str, amount: Number, *, wait: bool | None = None
    ) -> IntentResult:
        """Move collateral (human units, e.g. "250.5" USDC) from cross into an open
        isolated position (at most the free collateral)."""
        info = await self._market(market)
        action = {"type": "add_margin", "market": info.id, "amount": info.quote.to_units(amount)}
        return await self._one(action, wait)

    async def remove_margin(
        self, market: int | str, amount: Number, *, wait: bool | None = None
    ) -> IntentResult:
        """Move collateral back from an isolated position to cross (it must keep its
        initial margin)."""
        info = await self._market(market)
        action = {"type": "remove_margin", "market": info.id,
                  "amount": info.quote.to_units(amount)}  # fmt: skip
        return await self._one(action, wait)

    async def set_option_margin(self, mode: str, *, wait: bool | None = None) -> IntentResult:
        """The account's option margin mode: "portfolio" (the scenario risk matrix over
        options and perps together) or "standard" (each option leg margined alone).
        Refused (insufficient_margin) if the equity would not cover the new mode's
        initial margin."""
        if mode not in ("portfolio", "standard"):
            raise ValueError(f"mode must be portfolio or standard, not {mode!r}")
        return await self._one({"type": "set_option_margin", "mode": mode}, wait)

    # ------------------------------------------------------------------ queries

    async def status(self) -> Any:
        return await self._get("/v1/status")

    async def account_state(self, address: bytes | str | None = None) -> Any:
        """Balances (engine units) and open orders, at the height given in the answer."""
        return await self._get(f"/v1/accounts/{self._addr(address)}")

    async def balances(self, address: bytes | str | None = None) -> dict[str, dict[str, Any]]:
        """Per asset symbol: available and locked, as Decimals in human units."""
        raw = await self.account_state(address)
        markets = await self.markets()
        out: dict[str, dict[str, Any]] = {}
        for symbol, balance in raw["balances"].items():
            asset = markets.asset(balance["asset"])
            out[symbol] = {
                "available": asset.from_units(balance["available"]),
                "locked": asset.from_units(balance["locked"]),
            }
        return out

    async def book(self, market: int | str, depth: int = 20) -> Any:
        info = await self._market(market)
        return await self._get(f"/v1/markets/{info.id}/book", depth=depth)

    async def page(
        self,
        kind: str,
        of: int | str | bytes | None = None,
        *,
        limit: int = 100,
        cursor: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> HistoryPage:
        """One page of a history list: `kind` is trades, funding_rates or
        market_liquidations (of a market), fills, orders, deposits, withdrawals, funding or
        liquidations (of an account, this client's by default); a time range
        [start_ms, end_ms) in block time; at most `limit` (≤ 1000) items."""
        template, key, scope = HISTORY[kind]
        markets = await self.markets()
        if scope == "market":
            assert isinstance(of, int | str), f"{kind} need a market"
            where: str | int = markets.market(of).id
        else:
            assert not isinstance(of, int), "an account is an address"
            where = self._addr(of)
        raw = await self._get(
            template.format(where), limit=limit, cursor=cursor, start_ms=start_ms, end_ms=end_ms
        )
        items = [with_decimals(markets, item) for item in raw[key]]
        return HistoryPage(items, raw["next_cursor"])

    async def iterate(
        self, kind: str, of: int | str | bytes | None = None, **query: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a history list in the range, most recent first, page by page."""
        cursor = None
        while True:
            found = await self.page(kind, of, cursor=cursor, **query)
            for item in found.items:
                yield item
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    async def trades(self, market: int | str, limit: int = 100, **query: Any) -> Any:
        """Recent trades, most recent first (`query`: cursor, start_ms, end_ms)."""
        return (await self.page("trades", market, limit=limit, **query)).items

    async def open_orders(self, address: bytes | str | None = None) -> Any:
        raw = (await self._get(f"/v1/accounts/{self._addr(address)}/orders"))["orders"]
        markets = await self.markets()
        return [with_decimals(markets, order) for order in raw]

    async def order_history(
        self, address: bytes | str | None = None, limit: int = 100, **query: Any
    ) -> Any:
        return (await self.page("orders", address, limit=limit, **query)).items

    async def fills(
        self, address: bytes | str | None = None, limit: int = 100, **query: Any
    ) -> Any:
        return (await self.page("fills", address, limit=limit, **query)).items

    async def deposits(
        self, address: bytes | str | None = None, limit: int = 100, **query: Any
    ) -> Any:
        """Deposits credited (chain tx, confirmations, credited height), most recent first."""
        return (await self.page("deposits", address, limit=limit, **query)).items

    async def withdrawals(
        self, address: bytes | str | None = None, limit: int = 100, **query: Any
    ) -> Any:
        """Withdrawals with their status (pending, checkpointed, landed, claimed)."""
        return (await self.page("withdrawals", address, limit=limit, **query)).items

    async def withdrawal(self, withdrawal_id: int) -> Any:
        return with_decimals(
            await self.markets(), await self._get(f"/v1/withdrawals/{withdrawal_id}")
        )

    async def claim_call(self, withdrawal_id: int) -> Any:
        """The exact `claimWithdrawal` call for a checkpointed withdrawal: `contract`,
        `function`, `args` (in order) and `calldata`; `claimable` once it landed."""
        return await self._get(f"/v1/withdrawals/{withdrawal_id}/claim")

    async def wait_claimable(self, withdrawal_id: int, timeout_s: float = 300.0) -> Any:
        """Poll until the withdrawal's checkpoint landed on chain; its claim call. Raises
        TimeoutError after `timeout_s`, ApiError if the node does not know it."""
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    call = await self.claim_call(withdrawal_id)
                except ApiError as exc:
                    if exc.code != "not_checkpointed":
                        raise
                else:
                    if call["claimable"] or call["status"] == "claimed":
                        return call
                await trio.sleep(CLAIM_POLL_S)
        raise TimeoutError(f"withdrawal {withdrawal_id} not claimable after {timeout_s} s")

    async def candles(
        self,
        market: int | str,
        interval: str = "1m",
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """OHLCV candles (1m, 5m, 15m, 1h, 4h, 1d), oldest first, integers and Decimals."""
        info = await self._market(market)
        raw = await self._get(
            f"/v1/markets/{info.id}/candles",
            interval=interval,
            start_ms=start_ms,
            end_ms=end_ms,
            limit=limit,
        )
        return [candle_view(info, c) for c in raw["candles"]]

    async def stats(self, market: int | str) -> dict[str, Any]:
        """The market's last 24 h: open, high, low, last, volume, trades (and Decimals)."""
        info = await self._market(market)
        raw: dict[str, Any] = await self._get(f"/v1/markets/{info.id}/stats")
        return {**raw, **stats_decimals(info, raw)}

    async def order(self, oid: int) -> Any:
        return with_decimals(await self.markets(), await self._get(f"/v1/orders/{oid}"))

    async def order_by_cloid(self, cloid: int, address: bytes | str | None = None) -> Any:
        path = f"/v1/accounts/{self._addr(address)}/orders/cloid/{cloid}"
        return with_decimals(await self.markets(), await self._get(path))

    async def positions(self, address: bytes | str | None = None) -> list[dict[str, Any]]:
        """Perp positions (signed size, entry, mark, PnL, margin mode, leverage,
        liquidation price): the node's integers and their Decimals."""
        raw = await self._get(f"/v1/accounts/{self._addr(address)}/positions")
        markets = await self.markets()
        return [with_decimals(markets, p) for p in raw["positions"]]

    async def margin(self, address: bytes | str | None = None) -> dict[str, Any]:
        """The margin summary: collateral, equity, initial and maintenance margin, free
        collateral, `leverage` (a Decimal) and the positions."""
        raw = await self._get(f"/v1/accounts/{self._addr(address)}/margin")
        return margin_decimals(await self.markets(), raw)

    async def options(self, market: int | str | None = None) -> Any:
        """Option series (terms, forward, mark vol and its source, mark, Greeks × 10¹⁸ as
        decimal strings); one series with `market`."""
        if market is None:
            return (await self._get("/v1/options"))["series"]
        info = await self._market(market)
        return await self._get(f"/v1/options/{info.id}")

    async def option_account(self, address: bytes | str | None = None) -> dict[str, Any]:
        """An account's option holdings with their Greeks, its margin and its P&L in each
        risk-matrix scenario."""
        found: dict[str, Any] = await self._get(f"/v1/accounts/{self._addr(address)}/options")
        return found

    async def prices(self, market: int | str | None = None) -> Any:
        """A perp market's index, mark, premium, funding estimate and oracle state (every
        perp market's, as a list, without `market`)."""
        markets = await self.markets()
        if market is None:
            raw = await self._get("/v1/prices")
            return [with_decimals(markets, m) for m in raw["markets"]]
        info = markets.market(market)
        return with_decimals(markets, await self._get(f"/v1/markets/{info.id}/prices"))

    async def funding(
        self, address: bytes | str | None = None, limit: int = 100, **query: Any
    ) -> Any:
        """Funding payments of an account (> 0 received), most recent first."""
        return (await self.page("funding", address, limit=limit, **query)).items

    async def funding_rates(self, market: int | str, limit: int = 100, **query: Any) -> Any:
        """Funding rates paid in a perp market (ppb of the mark), most recent first."""
        return (await self.page("funding_rates", market, limit=limit, **query)).items

    async def liquidations(
        self,
        address: bytes | str | None = None,
        limit: int = 100,
        *,
        market: int | str | None = None,
        **query: Any,
    ) -> Any:
        """Liquidation records (liquidation, liquidation_order, fill, backstop,
        deleveraged, liquidation_fee, bad_debt) of an account, or of a `market`."""
        if market is not None:
            found = await self.page("market_liquidations", market, limit=limit, **query)
        else:
            found = await self.page("liquidations", address, limit=limit, **query)
        return found.items

    async def checkpoints(self) -> Any:
        return (await self._get("/v1/checkpoints"))["checkpoints"]

    def _addr(self, address: bytes | str | None) -> str:
        return format_address(self.account if address is None else _address_bytes(address))

    # ------------------------------------------------------------------ streams

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[Stream]:
        """A /v1/stream connection: `async with client.stream() as s: await
        s.subscribe_book(0); async for message in s: ...` (see seqnet_sdk/stream.py)."""
        async with Stream.connect(self.url) as stream:
            yield stream


def _body(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        raise ApiError(response.status_code, "bad_response", response.text[:200]) from None
    if response.status_code != 200:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise ApiError(
            response.status_code, error.get("code", "http_error"), error.get("message", "")
        )
    return body
