"""POST /v1/admin/listings (node/api/listings.py): a listing with the quorum's signatures is
taken and, once its block executes, the series shows in /v1/markets, /v1/options and its
book; a listing that is malformed, oversized, short of the quorum or badly signed is
refused with a 4xx and its code. The node is tests/api/exchange.py's in-process exchange
with a listing facade that checks as a member does and applies the listing at once."""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from consensus.crypto import Ed25519Scheme, Ed25519Signer
from node.api.app import create_app, serve_api
from node.listing import ListingPool, check_listing, decode_listing, sign_terms, terms_of
from node.runtime import Executable
from tests.api.exchange import ExchangeNode
from tests.api.test_option_api import BTC_PERP, OPEN, option_exchange

CHAIN = b"\x42" * 32
SIGNERS = [Ed25519Signer(bytes([i + 1]) * 32) for i in range(4)]
KEYS = tuple(s.public_key for s in SIGNERS)
SERIES = 30


class ListingNode(ExchangeNode):
    """Takes a listing as a member does (quorum 3 of 4); with `auto_list`, its block
    executes at once."""

    def __init__(self, chain: bytes = CHAIN, keys: tuple[bytes, ...] = KEYS) -> None:
        super().__init__(option_exchange())
        self.chain, self.keys = chain, keys
        self.pool = ListingPool()
        self.auto_list = True

    def submit_listing(self, entry: bytes) -> bool:
        listing = check_listing(entry, self.chain, self.keys, 3, Ed25519Scheme())
        new = self.pool.offer(listing)
        if self.auto_list:
            self.apply([Executable(decode_listing(entry).engine_entry(), bytes(20), None)])
            self.pool.committed(listing.table())
        return new


def terms(**over: Any) -> dict[str, Any]:
    expiry_ms = time.time_ns() // 1_000_000 + 5 * 86_400_000
    return {"id": SERIES, "symbol": "BTC-NEW-99000-P", "underlying": BTC_PERP,
            "strike": 99_000 * 10**6, "expiry_ms": expiry_ms, "right": "put",
            "underlying_lots": 10**4, "vol_e9": 650_000_000, "tick_size": 100_000,
            "lot_size": 1, "maker_fee_bps": 2, "taker_fee_bps": 5, **over}  # fmt: skip


def body(table: dict[str, Any], members: tuple[int, ...] = (0, 1, 3)) -> dict[str, Any]:
    return {
        "terms": table,
        "signatures": [
            {"member": m, "signature": "0x" + sign_terms(SIGNERS[m], CHAIN, terms_of(table)).hex()}
            for m in members
        ],
    }


def code(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error"]["code"]


async def test_a_signed_listing_is_listed_and_shows_in_the_market_lists(
    nursery: trio.Nursery,
) -> None:
    node = ListingNode()
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        before = (await http.get("/v1/markets")).json()["markets"]
        assert SERIES not in [m["id"] for m in before]
        assert (await http.get(f"/v1/markets/{SERIES}/book")).status_code == 404
        table = terms()
        reply = await http.post("/v1/admin/listings", json=body(table))
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"status": "accepted", "market": SERIES}
        markets = (await http.get("/v1/markets")).json()["markets"]
        assert markets[-1] == {"id": SERIES, "kind": "option", "quote": 1, **table}
        series = (await http.get("/v1/options")).json()["series"]
        assert SERIES in [s["market"] for s in series]
        one = (await http.get(f"/v1/options/{SERIES}")).json()
        assert one["symbol"] == "BTC-NEW-99000-P" and one["right"] == "put"
        book = (await http.get(f"/v1/markets/{SERIES}/book")).json()
        assert book["market"] == SERIES and book["bids"] == []
        # Listed: the same id again is the engine's rejection, answered by the facade.
        again = await http.post("/v1/admin/listings", json=body(table))
        assert again.status_code == 200  # this facade has no taken-check: the engine's


async def test_bad_listings_are_refused_with_a_code(nursery: trio.Nursery) -> None:
    node = ListingNode()
    node.auto_list = False
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    url = "/v1/admin/listings"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        table = terms()
        assert code(await http.post(url, json=body(table, (0, 1)))) == (400, "listing_quorum")
        forged = body(table)
        forged["signatures"][1]["signature"] = "0x" + "00" * 64
        assert code(await http.post(url, json=forged)) == (400, "bad_listing_signature")
        other_chain = body(table)
        wrong = sign_terms(SIGNERS[0], b"\x43" * 32, terms_of(table)).hex()
        other_chain["signatures"][0]["signature"] = "0x" + wrong
        assert code(await http.post(url, json=other_chain)) == (400, "bad_listing_signature")
        doubled = body(table)
        doubled["signatures"][1] = doubled["signatures"][0]
        assert code(await http.post(url, json=doubled)) == (400, "malformed_listing")
        outsider = body(table, (0, 1))
        sig = sign_terms(Ed25519Signer(b"\x77" * 32), CHAIN, terms_of(table)).hex()
        outsider["signatures"].append({"member": 9, "signature": "0x" + sig})
        assert code(await http.post(url, json=outsider)) == (400, "bad_listing_signature")
        for bad in (
            {"terms": table},
            {**body(table), "extra": 1},
            {**body(table), "terms": terms(right="both")},
            {**body(table), "terms": terms(strike=0)},
            {"terms": {**table, "kind": "option"}, "signatures": []},
            {"terms": table, "signatures": [{"member": 0, "signature": "0xzz"}]},
            {"terms": table, "signatures": "0x00"},
            [],
        ):
            assert code(await http.post(url, json=bad)) == (400, "malformed_listing"), bad
        not_json = await http.post(url, content=b"{", headers={"content-type": "application/json"})
        assert code(not_json) == (400, "malformed_listing")
        huge = await http.post(
            url,
            content=b"[" + b"0," * 100_000 + b"0]",
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        as_text = await http.post(url, content=b"{}", headers={"content-type": "text/plain"})
        assert as_text.status_code == 415
        # Good ones until the pool is full: then 503.
        for i in range(node.pool.limit):
            table_i = terms(id=100 + i, symbol=f"S{i}")
            assert (await http.post(url, json=body(table_i))).status_code == 200
        full = await http.post(url, json=body(terms(id=999, symbol="FULL")))
        assert code(full) == (503, "listings_full")


async def test_a_node_without_listings_answers_404(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_api, create_app(ExchangeNode(), OPEN), "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        reply = await http.post("/v1/admin/listings", json=body(terms()))
        assert code(reply) == (404, "no_listings")


async def test_the_sdk_finds_a_series_listed_after_it_read_the_markets(
    nursery: trio.Nursery,
) -> None:
    from seqnet_sdk import Client

    node = ListingNode()
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    async with Client(f"http://127.0.0.1:{port}", bytes(31) + b"\x0a") as client:
        before = await client.markets()
        assert SERIES not in before.markets
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.post("/v1/admin/listings", json=body(terms()))).status_code == 200
        book = await client.book("BTC-NEW-99000-P")  # the cached list lacks it: refreshed
        assert book["market"] == SERIES
        assert (await client.markets()).market(SERIES).symbol == "BTC-NEW-99000-P"
