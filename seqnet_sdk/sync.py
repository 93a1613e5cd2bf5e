"""`SyncClient`: the async `Client` for plain synchronous scripts.

One background thread runs a trio loop that owns the `Client`; each method call is
carried into it with `trio.from_thread.run` and blocks until done. So there is one
implementation of every call (the async one), and a script needs no async code:

    with SyncClient(url, key) as client:
        client.place("ETH-USDC", "buy", "0.5", "2999.5")
        for message in client.stream(book=[0], account=True):
            ...

Every `Client` coroutine method is available under the same name and arguments.
`stream()` yields messages from a background stream through a bounded queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final

import trio

from seqnet_sdk.client import Client
from seqnet_sdk.stream import Stream

STREAM_QUEUE: Final = 10_000
_END: Final = object()


class SyncClient:
    def __init__(self, url: str, private_key: bytes | str, **options: Any) -> None:
        self._client = Client(url, private_key, **options)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()
        await self._client.aclose()

    @property
    def client(self) -> Client:
        return self._client

    @property
    def address(self) -> str:
        return self._client.address

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                return await method(*args, **kwargs)

            return trio.from_thread.run(run, trio_token=self._token)

        return call

    def stream(
        self,
        *,
        book: Sequence[int] = (),
        trades: Sequence[int] = (),
        account: bool | str = False,
        checkpoints: bool = False,
        prices: Sequence[int] = (),
        liquidations: Sequence[int] = (),
        positions: bool | str = False,
    ) -> Iterator[dict[str, Any]]:
        """Subscribe and yield messages until the caller stops iterating."""
        inbox: queue.Queue[Any] = queue.Queue(STREAM_QUEUE)
        cancel = trio.CancelScope()

        async def pump() -> None:
            with cancel:
                try:
                    async with Stream.connect(self._client.url) as stream:
                        for market in book:
                            await stream.subscribe_book(market)
                        for market in trades:
                            await stream.subscribe_trades(market)
                        if account:
                            who = self._client.address if account is True else account
                            await stream.subscribe_account(who)
                        if checkpoints:
                            await stream.subscribe_checkpoints()
                        for market in prices:
                            await stream.subscribe_prices(market)
                        for market in liquidations:
                            await stream.subscribe_liquidations(market)
                        if positions:
                            who = self._client.address if positions is True else positions
                            await stream.subscribe_positions(who)
                        async for message in stream:
                            await trio.to_thread.run_sync(inbox.put, message)
                except Exception as exc:
                    inbox.put(exc)
            inbox.put(_END)

        assert self._nursery is not None
        trio.from_thread.run_sync(self._nursery.start_soon, pump, trio_token=self._token)
        try:
            while True:
                item = inbox.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            trio.from_thread.run_sync(cancel.cancel, trio_token=self._token)

    def close(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(timeout=10)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
