"""The client API (node/api/app.py) over real hypercorn on 127.0.0.1, with httpx and
trio-websocket clients, against `LocalFacade`, which really recovers every signature.

No timing thresholds: waits are for conditions, bounded by `fail_after` only so that a
bug fails instead of hanging.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgpack
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from node.api.app import ApiLimits, SubmitResult, create_app, serve_api
from node.api.local import LocalFacade
from node.api.ratelimit import RateLimit
from node.api.schema import FIELD_SCHEMAS, action_schema
from node.intents import (
    SCHEMA,
    SECP256K1_N,
    Domain,
    SignedIntent,
    address_of_private_key,
    intent_to_json,
    pack_intent,
    place_action,
    sign_intent,
)

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
OTHER_DOMAIN = Domain(1, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
KEY = bytes(31) + b"\x01"
OTHER_KEY = bytes(31) + b"\x02"
ACCOUNT = address_of_private_key(KEY)
OPEN = ApiLimits(ip_limit=None, account_limit=None)
NONCES = itertools.count(1_700_000_000_000)

PLACE: dict[str, Any] = place_action(0, "buy", 3_000_000, 2_000_000)
CANCEL: dict[str, Any] = {"type": "cancel", "market": 0, "oid": 7}
WITHDRAW: dict[str, Any] = {"type": "withdraw", "asset": 1, "amount": 5}


def signed(
    action: dict[str, Any] = PLACE, *, key: bytes = KEY, domain: Domain = DOMAIN
) -> SignedIntent:
    return sign_intent(key, ACCOUNT, next(NONCES), action, domain)


def as_json(intent: SignedIntent) -> dict[str, Any]:
    return intent_to_json(intent)


def with_signature(intent: SignedIntent, signature: bytes) -> dict[str, Any]:
    obj = as_json(intent)
    obj["signature"] = "0x" + signature.hex()
    return obj


def high_s(intent: SignedIntent) -> bytes:
    r, s, v = intent.signature[:32], intent.signature[32:64], intent.signature[64]
    flipped = SECP256K1_N - int.from_bytes(s, "big")
    return r + flipped.to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28


async def start(nursery: trio.Nursery, facade: Any, limits: ApiLimits = OPEN) -> str:
    port = await nursery.start(serve_api, create_app(facade, limits), "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def facade() -> LocalFacade:
    return LocalFacade(DOMAIN)


@pytest.fixture
async def client(nursery: trio.Nursery, facade: LocalFacade) -> AsyncIterator[httpx.AsyncClient]:
    url = await start(nursery, facade)
    async with httpx.AsyncClient(base_url=url) as http:
        yield http


async def post(http: httpx.AsyncClient, body: Any, query: str = "") -> httpx.Response:
    return await http.post("/v1/intents" + query, content=orjson.dumps(body), headers=_JSON)


_JSON = {"content-type": "application/json"}


# ---------------------------------------------------------------------------------------
# HTTP intake


async def test_single_intent_is_accepted_under_its_digest(client: httpx.AsyncClient) -> None:
    intent = signed()
    response = await post(client, as_json(intent))
    assert response.status_code == 200
    assert response.json() == {
        "results": [{"id": "0x" + intent.digest(DOMAIN).hex(), "status": "accepted"}]
    }
    again = await post(client, as_json(intent))  # resubmitting is idempotent
    assert again.json()["results"][0]["status"] == "accepted"


async def test_batch_answers_each_intent_in_order(client: httpx.AsyncClient) -> None:
    good, cancel = signed(), signed(CANCEL)
    bad_v, high, zero_r = signed(), signed(), signed()
    foreign_withdraw = signed(WITHDRAW, key=OTHER_KEY)
    wrong_domain = signed(WITHDRAW, domain=OTHER_DOMAIN)
    bad_tif = {**as_json(signed()), "action": {**PLACE, "tif": "day"}}
    negative_price = {**as_json(signed()), "action": {**PLACE, "price": -1}}
    unknown = {**as_json(signed()), "action": {"type": "teleport"}}
    batch = [
        as_json(good),
        with_signature(bad_v, bad_v.signature[:64] + b"\x1e"),
        with_signature(high, high_s(high)),
        with_signature(zero_r, bytes(32) + zero_r.signature[32:]),
        as_json(foreign_withdraw),
        as_json(wrong_domain),
        bad_tif,
        negative_price,
        unknown,
        {"not": "an intent"},
        as_json(cancel),
    ]
    response = await post(client, {"intents": batch})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["status"], r.get("code")) for r in results] == [
        ("accepted", None),
        ("rejected", "bad_v"),
        ("rejected", "high_s"),
        ("rejected", "invalid_signature"),
        ("rejected", "signer_not_account"),
        ("rejected", "signer_not_account"),  # wrong domain: another key recovers
        ("rejected", "bad_value"),
        ("rejected", "out_of_range"),
        ("rejected", "unknown_action"),
        ("rejected", "unknown_field"),
        ("accepted", None),
    ]
    assert results[0]["id"] == "0x" + good.digest(DOMAIN).hex()
    assert results[1]["id"] == "0x" + bad_v.digest(DOMAIN).hex()  # decodable: it has an id
    assert results[6]["id"] is None and results[6]["field"] == "tif"


async def test_floats_and_duplicate_keys_refuse_the_whole_body(client: httpx.AsyncClient) -> None:
    # PROTOCOL.md §4.5: such a body is not intent JSON at all, wherever the float is.
    float_price = {**as_json(signed()), "action": {**PLACE, "price": 1.5}}
    response = await post(client, {"intents": [as_json(signed()), float_price]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_type"
    duplicate = b'{"intents": [{"nonce": 1, "nonce": 2}]}'
    response = await client.post("/v1/intents", content=duplicate, headers=_JSON)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate_key"


async def test_wait_committed_returns_the_height(
    nursery: trio.Nursery, client: httpx.AsyncClient, facade: LocalFacade
) -> None:
    nursery.start_soon(facade.run, 0.005)
    intents = [signed(), signed(CANCEL)]
    response = await post(
        client, {"intents": [as_json(i) for i in intents]}, "?wait=committed&timeout_ms=10000"
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["committed", "committed"]
    assert all(r["height"] >= 1 for r in results)


async def test_wait_committed_times_out_without_blocks(client: httpx.AsyncClient) -> None:
    response = await post(client, as_json(signed()), "?wait=committed&timeout_ms=20")
    assert response.json()["results"][0]["status"] == "timeout"


async def test_oversized_bodies_are_413(nursery: trio.Nursery, facade: LocalFacade) -> None:
    limits = ApiLimits(ip_limit=None, account_limit=None, max_body_bytes=4096, max_batch_intents=3)
    url = await start(nursery, facade, limits)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000  # no Content-Length: refused while streaming

    async with httpx.AsyncClient(base_url=url) as http:
        declared = await http.post("/v1/intents", content=b" " * 5000, headers=_JSON)
        streamed = await http.post("/v1/intents", content=chunks(), headers=_JSON)
        batch = await post(http, {"intents": [as_json(signed()) for _ in range(4)]})
    for response in (declared, streamed, batch):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"


GARBAGE: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"[]", "application/json"),
    (b'"intent"', "application/json"),
    (b"{", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"\xc3\x28", "application/json"),  # invalid UTF-8
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    (b"NaN", "application/json"),
    (b"1e400", "application/json"),
    (b"9" * 5000, "application/json"),
    (b'{"intents": 5}', "application/json"),
    (b'{"intents": []}', "application/json"),
    (b'{"intents": [], "extra": 1}', "application/json"),
    (b'{"intents": [], "intents": []}', "application/json"),
    (b'{"action": 1, "account": 2, "nonce": 3, "signature": 4}', "application/json"),
    (b"{}", "text/plain"),
    (b"{}", "application/x-www-form-urlencoded"),
    (b"{}", ""),
    (msgpack.packb({"intents": []}), "application/msgpack"),
]


async def test_garbage_is_4xx_with_a_code_never_5xx(client: httpx.AsyncClient) -> None:
    valid = as_json(signed())
    bodies = [
        *GARBAGE,
        (json.dumps({**valid, "nonce": 2**64}).encode(), "application/json"),
        (orjson.dumps({**valid, "nonce": -1}), "application/json"),
        (orjson.dumps({**valid, "nonce": True}), "application/json"),
        (orjson.dumps({**valid, "signature": "0x" + "zz" * 65}), "application/json"),
        (orjson.dumps({**valid, "account": "0x1234"}), "application/json"),
        (orjson.dumps({**valid, "action": [1, 2, 3]}), "application/json"),
        (b'{"nonce": 1, "nonce": 2}', "application/json"),
    ]
    for body, content_type in bodies:
        response = await client.post(
            "/v1/intents", content=body, headers={"content-type": content_type}
        )
        assert 400 <= response.status_code < 500, (body[:60], response.text)
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    for query in ("?wait=soon", "?timeout_ms=abc", "?timeout_ms=0", "?timeout_ms=" + "9" * 40):
        response = await post(client, valid, query)
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "bad_request"


async def test_unknown_routes_and_methods_use_the_error_format(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.delete("/v1/intents")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


async def test_http_ip_limit_429_and_cancels_keep_headroom(
    nursery: trio.Nursery, facade: LocalFacade
) -> None:
    # Refill so slow that the test never sees it; burst 10, of which 3 only for cancels.
    ip_limit = RateLimit(rate_per_s=0.001, burst=10, cancel_cost=0.25, reserve=3)
    limits = ApiLimits(ip_limit=ip_limit, account_limit=None, max_batch_intents=5)
    url = await start(nursery, facade, limits)
    async with httpx.AsyncClient(base_url=url) as http:
        first = await post(http, {"intents": [as_json(signed()) for _ in range(5)]})  # 6 tokens
        assert first.status_code == 200
        refused = await post(http, as_json(signed()))  # 1 + 1 would dip into the reserve
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["retry_after_ms"] >= 1
        cancel = await post(http, as_json(signed(CANCEL)))
        assert cancel.status_code == 200
        assert cancel.json()["results"][0]["status"] == "accepted"


async def test_account_limit_charges_only_admitted_intents(
    nursery: trio.Nursery, facade: LocalFacade
) -> None:
    account_limit = RateLimit(rate_per_s=0.001, burst=6, cancel_cost=0.5, reserve=2)
    url = await start(nursery, facade, ApiLimits(ip_limit=None, account_limit=account_limit))
    async with httpx.AsyncClient(base_url=url) as http:
        # Forged intents for the account (high s) are refused and cost it nothing.
        for _ in range(5):
            forged = [with_signature(i, high_s(i)) for i in (signed() for _ in range(4))]
            response = await post(http, {"intents": forged})
            assert {r["code"] for r in response.json()["results"]} == {"high_s"}

        first = as_json(signed())
        assert (await post(http, first)).json()["results"][0]["status"] == "accepted"
        # Replaying the account's admitted intent (anyone can) costs it nothing more.
        for _ in range(3):
            replayed = await post(http, first)
            assert replayed.json()["results"][0]["status"] == "accepted"

        orders = await post(http, {"intents": [as_json(signed()) for _ in range(4)]})
        results = orders.json()["results"]
        assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected"]
        assert results[3]["code"] == "rate_limited" and results[3]["retry_after_ms"] >= 1
        assert results[3]["id"] is not None

        alone = await post(http, as_json(signed()))  # every intent refused: 429
        assert alone.status_code == 429
        assert int(alone.headers["retry-after"]) >= 1

        cancels = await post(http, {"intents": [as_json(signed(CANCEL)) for _ in range(4)]})
        assert [r["status"] for r in cancels.json()["results"]] == ["accepted"] * 4


async def test_status_health_and_readiness(nursery: trio.Nursery) -> None:
    facade = LocalFacade(DOMAIN, ready=False)
    url = await start(nursery, facade)
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]["code"] == "not_ready"
        facade.ready = True
        assert (await http.get("/readyz")).json() == {"ready": True}
        status = (await http.get("/v1/status")).json()
        assert status["committed_height"] == 0


class BrokenFacade:
    def __init__(self, mode: str) -> None:
        self.domain = DOMAIN
        self.mode = mode

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        if self.mode == "raise":
            raise RuntimeError("node bug")
        return []  # the wrong number of results

    def status(self) -> dict[str, Any]:
        return {}

    def is_ready(self) -> bool:
        return True


@pytest.mark.parametrize("mode", ["raise", "short"])
async def test_a_failing_node_is_a_500_with_the_error_format(
    nursery: trio.Nursery, mode: str
) -> None:
    url = await start(nursery, BrokenFacade(mode))
    async with httpx.AsyncClient(base_url=url) as http:
        response = await post(http, as_json(signed()))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"


async def test_openapi_document_describes_the_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/v1/openapi.json")).json()
    assert {"/v1/intents", "/v1/status", "/healthz", "/readyz"} <= set(spec["paths"])
    operation = spec["paths"]["/v1/intents"]["post"]
    assert "application/json" in operation["requestBody"]["content"]
    assert {"200", "400", "413", "415", "429"} <= set(operation["responses"])
    assert "422" not in str(spec["paths"])
    # The documented intent schema has every protocol field, and nothing else.
    for kind, fields in SCHEMA.items():
        schema = action_schema(kind)
        assert schema["required"] == ["type", *(name for name, _ in fields)]
        assert all(name in FIELD_SCHEMAS for name, _ in fields)


# ---------------------------------------------------------------------------------------
# WebSocket intake


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/ws"


async def receive_json(ws: WebSocketConnection) -> dict[str, Any]:
    message = await ws.get_message()
    assert isinstance(message, str)
    answer: dict[str, Any] = orjson.loads(message)
    return answer


async def test_ws_pipelines_json_and_msgpack(nursery: trio.Nursery, facade: LocalFacade) -> None:
    url = await start(nursery, facade)
    sent: dict[Any, list[bytes]] = {}
    async with open_websocket_url(ws_url(url)) as ws:
        for n in range(20):
            intents = [signed(), signed(CANCEL)]
            sent[n] = [i.digest(DOMAIN) for i in intents]
            if n % 2:
                frame = {"id": f"m{n}", "intents": [pack_intent(i) for i in intents]}
                sent[f"m{n}"] = sent.pop(n)
                await ws.send_message(msgpack.packb(frame))
            else:
                await ws.send_message(
                    orjson.dumps({"id": n, "intents": [as_json(i) for i in intents]}).decode()
                )
        got: dict[Any, list[bytes]] = {}
        with trio.fail_after(20):
            while len(got) < len(sent):
                message = await ws.get_message()
                if isinstance(message, bytes):
                    answer = msgpack.unpackb(message)
                    got[answer["id"]] = [r["id"] for r in answer["results"]]
                else:
                    answer = orjson.loads(message)
                    got[answer["id"]] = [bytes.fromhex(r["id"][2:]) for r in answer["results"]]
                assert all(r["status"] == "accepted" for r in answer["results"])
    assert got == sent
    assert len(facade.mempool) == 40


async def test_ws_bad_frames_get_errors_then_close(
    nursery: trio.Nursery, facade: LocalFacade
) -> None:
    limits = ApiLimits(ip_limit=None, account_limit=None, ws_max_bad_frames=4)
    url = await start(nursery, facade, limits)
    async with open_websocket_url(ws_url(url)) as ws:
        await ws.send_message("not json")
        assert (await receive_json(ws))["error"]["code"] == "bad_encoding"
        await ws.send_message(orjson.dumps({"intents": []}).decode())
        assert (await receive_json(ws))["error"]["code"] == "missing_field"
        await ws.send_message(orjson.dumps({"id": 9, "intents": "x"}).decode())
        assert await receive_json(ws) == {
            "id": 9,
            "error": {
                "code": "bad_type",
                "message": "intents must be an array",
                "field": "intents",
            },
        }
        # A batch with one malformed intent is not a bad frame: per-intent answers.
        await ws.send_message(orjson.dumps({"id": 10, "intents": [{"x": 1}]}).decode())
        answer = await receive_json(ws)
        assert answer["id"] == 10 and answer["results"][0]["code"] == "unknown_field"
        await ws.send_message(b"\xc1")  # never valid msgpack
        error = msgpack.unpackb(await ws.get_message())
        assert error["error"]["code"] == "bad_encoding"
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
            await ws.get_message()
        reason = closed.value.reason
        assert reason is not None and reason.code == 1008


async def test_ws_deeply_nested_intent_map_is_a_rejection(
    nursery: trio.Nursery, facade: LocalFacade
) -> None:
    """An intent map in a binary frame is bounded by its encoded size (1,024 bytes,
    PROTOCOL §4.5), within which msgpack still nests 800 levels: validation answers per
    intent and never walks or reprs the value (a 1,020-deep `type` once raised
    RecursionError out of the decoder)."""
    url = await start(nursery, facade)
    intent = msgpack.unpackb(pack_intent(signed(CANCEL)))
    deep: Any = 1
    for _ in range(800):
        deep = [deep]
    frame = {"id": 3, "intents": [{**intent, "action": {"type": deep}}, pack_intent(signed())]}
    async with open_websocket_url(ws_url(url)) as ws:
        await ws.send_message(msgpack.packb(frame))
        with trio.fail_after(10):
            answer = msgpack.unpackb(await ws.get_message())
    assert answer["id"] == 3
    bad, good = answer["results"]
    assert (bad["status"], bad["code"], bad["id"]) == ("rejected", "unknown_action", None)
    assert len(bad["message"]) < 100
    assert good["status"] == "accepted"


class GatedFacade:
    """Holds every submit until `gate` is set; records how many were held at once."""

    def __init__(self, inner: LocalFacade) -> None:
        self.inner = inner
        self.domain = inner.domain
        self.gate = trio.Event()
        self.active = 0
        self.max_active = 0

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.gate.wait()
            return await self.inner.submit(intents, wait, timeout_s)
        finally:
            self.active -= 1

    def status(self) -> dict[str, Any]:
        return self.inner.status()

    def is_ready(self) -> bool:
        return True


async def test_ws_in_flight_is_bounded(nursery: trio.Nursery, facade: LocalFacade) -> None:
    gated = GatedFacade(facade)
    limits = ApiLimits(ip_limit=None, account_limit=None, ws_max_inflight_messages=4)
    url = await start(nursery, gated, limits)
    async with open_websocket_url(ws_url(url)) as ws:
        for n in range(12):
            await ws.send_message(orjson.dumps({"id": n, "intents": [as_json(signed())]}).decode())
        with trio.fail_after(10):
            while gated.active < 4:
                await trio.sleep(0.01)
        await trio.sleep(0.05)  # room for a broken bound to show itself
        assert gated.active == 4
        gated.gate.set()
        with trio.fail_after(20):
            ids = {(await receive_json(ws))["id"] for _ in range(12)}
    assert ids == set(range(12))
    assert gated.max_active == 4


async def test_ws_rate_limited_message_gets_an_error_with_its_id(
    nursery: trio.Nursery, facade: LocalFacade
) -> None:
    ip_limit = RateLimit(rate_per_s=0.001, burst=10, cancel_cost=0.25, reserve=3)
    limits = ApiLimits(ip_limit=ip_limit, account_limit=None, max_batch_intents=5)
    url = await start(nursery, facade, limits)
    async with open_websocket_url(ws_url(url)) as ws:
        batch = {"id": 1, "intents": [as_json(signed()) for _ in range(5)]}
        await ws.send_message(orjson.dumps(batch).decode())
        assert len((await receive_json(ws))["results"]) == 5
        await ws.send_message(orjson.dumps({"id": 2, "intents": [as_json(signed())]}).decode())
        refused = await receive_json(ws)
        assert refused["id"] == 2 and refused["error"]["code"] == "rate_limited"
        await ws.send_message(
            orjson.dumps({"id": 3, "intents": [as_json(signed(CANCEL))]}).decode()
        )
        assert (await receive_json(ws))["results"][0]["status"] == "accepted"


async def test_ws_wait_committed(nursery: trio.Nursery, facade: LocalFacade) -> None:
    url = await start(nursery, facade)
    nursery.start_soon(facade.run, 0.005)
    async with open_websocket_url(ws_url(url)) as ws:
        message = {"id": "w", "intents": [as_json(signed())], "wait": "committed"}
        await ws.send_message(orjson.dumps(message).decode())
        with trio.fail_after(10):
            answer = await receive_json(ws)
    assert answer["results"][0]["status"] == "committed"


async def test_fast_path_and_fastapi_route_answer_alike(nursery: trio.Nursery) -> None:
    """The served app sends POST /v1/intents past FastAPI (node/api/app.py FastIntake); the
    bare FastAPI app still routes it. Both must answer every case the same way, and the
    fast path must count its requests like any route."""
    facade = LocalFacade(DOMAIN)
    app = create_app(facade, OPEN)
    url = await start_app(nursery, app)
    intent = as_json(signed())
    cases: list[tuple[str, bytes, str]] = [
        ("", orjson.dumps(intent), "application/json"),
        ("?wait=soon", orjson.dumps(intent), "application/json"),
        ("?timeout_ms=abc", orjson.dumps(intent), "application/json"),
        ("?timeout_ms=0", orjson.dumps(intent), "application/json"),
        ("?timeout_ms=" + "9" * 40, orjson.dumps(intent), "application/json"),
        ("?timeout_ms=-5", orjson.dumps(intent), "application/json"),
        ("", b"{not json", "application/json"),
        ("", orjson.dumps(intent), "text/plain"),
    ]
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(base_url=url) as served,
        httpx.AsyncClient(transport=transport, base_url="http://bare") as bare,
    ):
        for query, body, content_type in cases:
            headers = {"content-type": content_type}
            fast = await served.post("/v1/intents" + query, content=body, headers=headers)
            slow = await bare.post("/v1/intents" + query, content=body, headers=headers)
            assert fast.status_code == slow.status_code, query
            if fast.status_code == 200:
                assert fast.json() == slow.json()
            else:
                assert fast.json()["error"]["code"] == slow.json()["error"]["code"], query
                assert fast.json()["error"].get("field") == slow.json()["error"].get("field")
        metrics = (await served.get("/metrics")).text
    assert 'method="POST",route="/v1/intents",status="400"' in metrics


async def start_app(nursery: trio.Nursery, app: Any) -> str:
    port = await nursery.start(serve_api, app, "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


@pytest.mark.timeout(30)  # the failure this guards against is a hang
async def test_a_stop_while_the_api_starts_still_stops_it(facade: LocalFacade) -> None:
    """A stop that lands while the server is still starting (a member SIGTERMed during
    start-up: the cancel comes before hypercorn reports it listens) must still shut the
    server down. The server runs shielded, so without the shutdown trigger this would
    never return (the member hung until SIGKILL)."""
    app = create_app(facade, OPEN)
    started = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()
        await serve_api(app, "127.0.0.1", 0, graceful_timeout_s=0.5)
    assert trio.current_time() - started < 5.0
