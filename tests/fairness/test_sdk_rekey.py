"""The Python SDK across a re-key (seqnet_sdk/client.py): envelopes sealed to the key it
read before the committee made a new one are refused `wrong_epoch` at intake, none of
them admitted; the client reads the key again and seals those once more to the new key.
Against a stand-in HTTP API (httpx.MockTransport) that judges envelopes by their epoch."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from node.fairness.envelope import decode_envelope
from node.fairness.threshold import DEV_CHAIN_ID, dealer_keygen
from node.intents import place_action
from seqnet_sdk import Client

KEY = (0x5EC).to_bytes(32, "big")
CONTRACT = "0x" + "11" * 20
KEYS = [dealer_keygen(4, 2, bytes([epoch + 1]) * 32, chain_id=DEV_CHAIN_ID)[0] for epoch in (0, 1)]


class StandInApi:
    """GET /v1/domain, GET /v1/fairness/key (the key of `epoch`), POST
    /v1/intents/encrypted: `wrong_epoch` for an envelope of another epoch (what intake
    answers), `committed` otherwise. Records the epochs of the envelopes posted."""

    def __init__(self) -> None:
        self.epoch = 0
        self.refused_epochs: set[int] = set()  # refused even when current (a node mid-re-key)
        self.posted: list[list[int]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/domain":
            return self._json({"chain_id": DEV_CHAIN_ID, "verifying_contract": CONTRACT})
        if request.url.path == "/v1/fairness/key":
            key = KEYS[self.epoch]
            return self._json(
                {
                    "status": "ready",
                    "epoch": self.epoch,
                    "committee_key": "0x" + key.encode().hex(),
                    "key_id": "0x" + key.key_id.hex(),
                }
            )
        assert request.url.path == "/v1/intents/encrypted"
        envelopes = [
            decode_envelope(bytes.fromhex(e[2:]))
            for e in orjson.loads(request.content)["envelopes"]
        ]
        self.posted.append([e.epoch for e in envelopes])
        results = [
            {"id": None, "status": "rejected", "code": "wrong_epoch", "message": "old key"}
            if e.epoch != self.epoch or e.epoch in self.refused_epochs
            else {"id": "0x" + bytes(32).hex(), "status": "committed", "height": 9, "oid": 1}
            for e in envelopes
        ]
        return self._json({"results": results})

    @staticmethod
    def _json(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=body)


def _client(api: StandInApi) -> Client:
    client = Client("http://stand-in", KEY)
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(api))
    return client


async def test_envelopes_refused_for_an_old_key_are_sealed_again_to_the_new_one() -> None:
    api = StandInApi()
    async with _client(api) as client:
        assert (await client.committee_key())["epoch"] == 0
        api.epoch = 1  # the committee re-keys; the client still holds epoch 0's key
        actions = [place_action(0, "buy", 3_000_000, 10**6), place_action(0, "sell", 3_100_000, 1)]
        results = await client.submit(actions, encrypted=True)
        assert [(r.status, r.oid) for r in results] == [("committed", 1)] * 2
        assert api.posted == [[0, 0], [1, 1]]  # refused, then sealed to the new key
        await client.submit(actions[:1], encrypted=True)
        assert api.posted[-1] == [1]  # the new key is kept


async def test_without_a_new_key_the_refusal_stands_and_nothing_is_posted_again() -> None:
    api = StandInApi()
    async with _client(api) as client:
        api.refused_epochs = {0}  # the key route still names epoch 0, intake refuses it
        (result,) = await client.submit([place_action(0, "buy", 3_000_000, 10**6)], encrypted=True)
        assert (result.status, result.code) == ("rejected", "wrong_epoch")
        assert api.posted == [[0]]  # read again, the same epoch: posted once, no loop
