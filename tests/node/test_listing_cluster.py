"""A series listed by the committee in running members (4 in process, real TCP): the
listing signed by 3 of the 4 members goes to one member through its API route, that
member proposes it when it leads, every member's voters check it and every engine lists
the series at the same height; then an order on the new series executes on every member.
A proposal carrying a listing without the quorum gets no vote."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio

from node.api.app import create_app
from node.intents import address_of_private_key, place_action, sign_intent
from node.listing import BadListing, block_listings, make_listing, sign_terms, terms_of
from node.net.messages import PeerProtocolError
from node.payload import NO_SIGNER, DepositRecord, with_signers
from node.runtime import Node
from node.store.storage import open_storage
from tests.node.test_oracle_runtime import BTC_PERP, FAST, index, make_perp_nodes

SERIES = 20
DAY_MS = 86_400_000
USDC_ID = 1
BUYER, SELLER = (0xB0B).to_bytes(32, "big"), (0x5E11).to_bytes(32, "big")


class FakeWatcher:
    """The chain watcher of every member, with the same two confirmed deposits (the
    members need funded traders; the real watcher needs a chain)."""

    def __init__(self, records: list[DepositRecord]) -> None:
        self.records = {r.deposit_id: r for r in records}
        self.head = 1

    def seen(self, deposit_id: int) -> DepositRecord | None:
        return self.records.get(deposit_id)

    def next_deposits(self, after: int, limit: int, min_age_s: float = 0.0) -> list[DepositRecord]:
        found = []
        while after + 1 in self.records and len(found) < limit:
            after += 1
            found.append(self.records[after])
        return found

    def applied(self, last_deposit_id: int) -> None:
        pass

    def origin(self, deposit_id: int) -> None:
        return None

    def add_listener(self, listener: Any) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"head": self.head}

    async def run(self) -> None:
        await trio.sleep_forever()


def terms(now_ms: int) -> dict[str, Any]:
    """A BTC call at 100,000 USDC, three days out, on the genesis chain's grid."""
    return {"id": SERIES, "symbol": "BTC-LISTED-100000-C", "underlying": BTC_PERP,
            "strike": 100_000 * 10**6, "expiry_ms": now_ms + 3 * DAY_MS, "right": "call",
            "underlying_lots": 10**4, "vol_e9": 600_000_000, "tick_size": 100_000,
            "lot_size": 1, "maker_fee_bps": 2, "taker_fee_bps": 5}  # fmt: skip


def fund(nodes: list[Node]) -> None:
    usdc = next(a for a in nodes[0].genesis.exchange.assets if a.id == USDC_ID)
    amount = 10**12  # a million USDC
    records = [
        DepositRecord(i + 1, address_of_private_key(key), usdc.token, amount, USDC_ID, amount)
        for i, key in enumerate((BUYER, SELLER))
    ]
    for node in nodes:
        node.watcher = node.executor.watcher = FakeWatcher(records)  # type: ignore[assignment]


def body(nodes: list[Node], table: dict[str, Any], members: tuple[int, ...]) -> dict[str, Any]:
    chain = nodes[0].genesis_hash
    sigs = [
        {"member": m, "signature": "0x" + sign_terms(nodes[m].signer, chain, terms_of(table)).hex()}
        for m in members
    ]
    return {"terms": table, "signatures": sigs}


async def test_a_listing_signed_by_three_of_four_lists_the_series_everywhere(
    tmp_path: Path,
) -> None:
    nodes = make_perp_nodes(tmp_path)
    fund(nodes)
    entry_node = nodes[1]
    app = create_app(entry_node)
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(60):
            while not all(index(n) for n in nodes):
                await trio.sleep(0.05)
            while any(n.engine.last_deposit_id < 2 for n in nodes):
                await trio.sleep(0.05)
        now = entry_node.now_ms()
        table = terms(now)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            two = await client.post("/v1/admin/listings", json=body(nodes, table, (0, 2)))
            assert two.status_code == 400 and two.json()["error"]["code"] == "listing_quorum"
            reply = await client.post("/v1/admin/listings", json=body(nodes, table, (0, 2, 3)))
            assert reply.status_code == 200, reply.text
            assert reply.json() == {"status": "accepted", "market": SERIES}
            again = await client.post("/v1/admin/listings", json=body(nodes, table, (1, 2, 3)))
            assert again.json()["status"] == "pending"
            with trio.fail_after(30):
                while not all(
                    n.engine.options and SERIES in n.engine.options.series for n in nodes
                ):
                    await trio.sleep(0.05)
            assert len(entry_node.listings) == 0  # committed: not proposed again
            # Every member's feeder observes the listed series' vol from now on (the
            # simulated source starts it at the listing's vol_e9).
            with trio.fail_after(30):
                while not all(
                    len(n.engine.options.vols.observations[SERIES]) >= 3  # type: ignore[union-attr]
                    for n in nodes
                ):
                    await trio.sleep(0.05)
            series = (await client.get("/v1/options")).json()["series"]
            assert SERIES in [s["market"] for s in series]
            markets = (await client.get("/v1/markets")).json()["markets"]
            assert markets[-1]["symbol"] == "BTC-LISTED-100000-C"
            taken = await client.post("/v1/admin/listings", json=body(nodes, table, (0, 1, 2)))
            assert taken.status_code == 409 and taken.json()["error"]["code"] == "market_taken"
        # An order on the new series executes on every member: a resting ask, then a bid
        # that takes it.
        price = 2_000 * 10**6  # 2,000 USDC for a 1-BTC call
        domain = entry_node.domain
        now = entry_node.now_ms()
        ask = sign_intent(SELLER, address_of_private_key(SELLER), now,
                          place_action(SERIES, "sell", price, 1), domain)  # fmt: skip
        bid = sign_intent(BUYER, address_of_private_key(BUYER), now,
                          place_action(SERIES, "buy", price, 1), domain)  # fmt: skip
        with trio.fail_after(30):
            (sold,) = await nodes[2].submit([ask], wait=True, timeout_s=20)
            assert sold.status == "committed", sold
            (bought,) = await nodes[3].submit([bid], wait=True, timeout_s=20)
            assert bought.status == "committed", bought
            top = max(n.exec_height for n in nodes)
            while min(n.exec_height for n in nodes) < top:
                await trio.sleep(0.05)
        buyer = address_of_private_key(BUYER)
        for node in nodes:
            options = node.engine.options
            assert options is not None
            holder = options.accounts[node.engine.accounts[buyer]]
            assert holder.holdings[SERIES].size == 1
        roots = {n.engine.checkpoint().state_root for n in nodes}
        assert len(roots) == 1
        nursery.cancel_scope.cancel()
    # A member restarted from its store (log replay) has the series, its book and holding.
    setup = nodes[0].setup
    nodes[0].storage.close()
    again = Node(setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()), FAST)
    options = again.engine.options
    assert options is not None and SERIES in options.series
    assert again.engine.genesis.markets[-1].symbol == "BTC-LISTED-100000-C"
    assert options.accounts[again.engine.accounts[buyer]].holdings[SERIES].size == 1
    again.storage.close()
    for node in nodes[1:]:
        node.storage.close()


async def test_a_proposal_with_a_listing_short_of_the_quorum_gets_no_vote(
    tmp_path: Path,
) -> None:
    nodes = make_perp_nodes(tmp_path)
    honest = nodes[0]
    chain = honest.genesis_hash
    table = terms(honest.now_ms())
    signatures = {m: sign_terms(nodes[m].signer, chain, terms_of(table)) for m in (0, 1)}
    short = make_listing(table, signatures).entry()
    keys = honest.committee.public_keys
    why = block_listings([short], chain, keys, honest.listing_quorum, honest._listing_scheme)
    assert why is not None and "listing_quorum" in why
    with pytest.raises(BadListing) as refused:
        honest.submit_listing(short)
    assert refused.value.code == "listing_quorum"
    # The voter's check of a proposal: refused as a bad observation is, the leader blamed.
    payload = with_signers([short], [NO_SIGNER])
    proposal = SimpleNamespace(payload=payload, round=5, author=1, timestamp_ms=honest.now_ms())
    with pytest.raises(PeerProtocolError, match="listing_quorum"):
        await honest._proposal_payload_ok(proposal)  # type: ignore[arg-type]
    assert honest.counters["proposals_rejected"] == 1
    full = make_listing(table, {**signatures, 3: sign_terms(nodes[3].signer, chain,
                                                           terms_of(table))})  # fmt: skip
    assert block_listings([full.entry()], chain, keys, 3, honest._listing_scheme) is None
    # A peer's forwarded listing ("l"): pooled when its signatures hold, else the peer's
    # fault.
    with pytest.raises(PeerProtocolError, match="listing_quorum"):
        honest._on_peer_listing(make_listing(table, signatures))
    honest._on_peer_listing(full)
    assert honest.listings.for_block(set()) == [full.entry()]
    for node in nodes:
        node.storage.close()
