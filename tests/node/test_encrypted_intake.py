"""Encrypted intents at a real node's API (a committee of one, in process, over HTTP):
the committee key route, each refusal of docs/PROTOCOL.md §10.3 through
POST /v1/intents/encrypted, the node's own header checks (signer, epoch, nonce), and an
envelope that commits and runs as its inner intent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from node.api.app import ApiLimits, create_app, serve_api
from node.fairness.envelope import HEADER_BYTES, MAX_ENVELOPE_BYTES, MIN_ENVELOPE_BYTES
from node.fairness.group import N
from node.fairness.threshold import DEV_CHAIN_ID, dealer_keygen
from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.intents import Domain, address_of_private_key, place_action, sign_intent
from node.procs import free_base_port
from node.runtime import Node, NodeOptions
from node.store.storage import open_storage
from seqnet_sdk import Client
from seqnet_sdk.encrypted import encrypt_action, encrypt_intent

KEY = (0x5EC).to_bytes(32, "big")
STRANGER_KEY = (0xBAD).to_bytes(32, "big")
ACCOUNT = address_of_private_key(KEY)
PLACE: dict[str, Any] = place_action(0, "buy", 3_000_000, 10**6)


@pytest.fixture
async def node(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Node]:
    committee_init(
        tmp_path,
        1,
        base_port=free_base_port(1),
        consensus=ConsensusParams(round_timeout_ms=300, checkpoint_interval_blocks=5),
    )
    setup = load_node_setup(tmp_path / "node0" / "config.toml")
    storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
    member = Node(setup, storage, NodeOptions(idle_block_interval_ms=40))
    await nursery.start(member.run)
    yield member
    nursery.cancel_scope.cancel()


@pytest.fixture
async def api(node: Node, nursery: trio.Nursery) -> str:
    port = await nursery.start(serve_api, create_app(node, ApiLimits()), "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


def sealed(
    node: Node,
    *,
    key: bytes = KEY,
    domain: Domain | None = None,
    epoch: int | None = None,
    nonce: int | None = None,
) -> bytes:
    fairness = node.genesis.fairness
    assert fairness is not None
    return encrypt_action(
        key,
        ACCOUNT,
        node.now_ms() if nonce is None else nonce,
        PLACE,
        domain or node.domain,
        fairness.key,
        fairness.epoch if epoch is None else epoch,
    )


def with_bytes(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


async def post(api: str, envelopes: list[bytes], wait: bool = False) -> list[dict[str, Any]]:
    body = {"envelopes": ["0x" + e.hex() for e in envelopes]}
    params = {"wait": "committed", "timeout_ms": 20_000} if wait else {}
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        response = await http.post("/v1/intents/encrypted", json=body, params=params)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def test_committee_key_route_matches_genesis(node: Node, api: str) -> None:
    fairness = node.genesis.fairness
    assert fairness is not None
    async with httpx.AsyncClient(base_url=api) as http:
        body = (await http.get("/v1/fairness/key")).json()
    assert body == fairness.public_json()
    assert (body["t"], body["n"], body["epoch"]) == (1, 1, 0)
    async with Client(api, KEY) as client:
        assert (await client.committee_key())["key_id"] == body["key_id"]


async def test_every_decoding_and_signature_refusal_through_the_route(node: Node, api: str) -> None:
    good = sealed(node)
    r, s = good[-65:-33], int.from_bytes(good[-33:-1], "big")
    flipped_v = bytes([55 - good[-1]])  # 27 <-> 28
    cases = {
        "too_large": good + bytes(MAX_ENVELOPE_BYTES + 1 - len(good)),
        "too_small": good[: MIN_ENVELOPE_BYTES - 1],
        "bad_version": with_bytes(good, 0, b"\x02"),
        "bad_length": good[:-65] + b"\x00" + good[-65:],
        "out_of_range": with_bytes(good, 1, bytes(8)),
        "wrong_chain": sealed(node, domain=Domain(999, node.domain.verifying_contract)),
        "bad_point": with_bytes(good, 45, b"\x05"),
        "bad_scalar": with_bytes(good, 78, b"\xff" * 32),
        "bad_kem_proof": with_bytes(good, 141, bytes([good[141] ^ 1])),
        "bad_v": with_bytes(good, len(good) - 1, b"\x05"),
        "high_s": good[:-65] + r + (N - s).to_bytes(32, "big") + flipped_v,
        "invalid_signature": good[:-65] + bytes(32) + good[-33:],
        "unauthorized_signer": sealed(node, key=STRANGER_KEY),
        "wrong_epoch": sealed(node, epoch=7),
        "nonce_out_of_window": sealed(node, nonce=1),
    }
    assert len(cases["bad_length"]) - HEADER_BYTES - 65 == 16 + 256 + 1
    results = await post(api, list(cases.values()))
    assert [r["code"] for r in results] == list(cases), results
    assert all(r["status"] == "rejected" for r in results)
    assert node.counters["intents_admitted"] == 0
    assert len(node.mempool) == 0


async def test_an_envelope_commits_and_runs_as_its_inner_intent(node: Node, api: str) -> None:
    envelope = sealed(node)
    (accepted,) = await post(api, [envelope])
    assert accepted["status"] == "accepted"
    (done,) = await post(api, [envelope], wait=True)
    # Opened and run by the engine: this account holds nothing.
    assert (done["status"], done["code"]) == ("rejected", "insufficient_balance"), done
    assert done["id"] == accepted["id"]
    # The SDK's encrypted=True path: the same, by the client.
    async with Client(api, KEY) as client:
        result = await client.place(
            0, "buy", size_units=10**6, price_ticks=3_000_000, encrypted=True
        )
    assert result.code == "insufficient_balance", result


async def test_envelopes_that_do_not_open_or_hold_a_foreign_intent_are_rejected(
    node: Node, api: str
) -> None:
    """Deterministic rejections after commit (PROTOCOL.md §10.5), each the envelope's
    outcome: sealed to some other key (`undecryptable`), and an inner intent signed by a
    key the account never approved (`bad_inner_intent`)."""
    fairness = node.genesis.fairness
    assert fairness is not None
    other_key, _ = dealer_keygen(1, 1, b"\x09" * 32, chain_id=DEV_CHAIN_ID)
    foreign = encrypt_intent(
        sign_intent(KEY, ACCOUNT, node.now_ms(), PLACE, node.domain),
        other_key,
        fairness.epoch,
        node.domain,
        KEY,
    )
    stranger_inner = encrypt_intent(
        sign_intent(STRANGER_KEY, ACCOUNT, node.now_ms() + 1, PLACE, node.domain),
        fairness.key,
        fairness.epoch,
        node.domain,
        KEY,
    )
    results = await post(api, [foreign, stranger_inner], wait=True)
    assert [(r["status"], r.get("code")) for r in results] == [
        ("rejected", "undecryptable"),
        ("rejected", "bad_inner_intent"),
    ], results
    assert all(r.get("height") is not None for r in results)


async def test_a_large_batch_is_checked_in_threads_with_the_same_verdicts(node: Node) -> None:
    """At THREAD_BATCH_MIN envelopes and more, intake checks them in worker threads: every
    refusal keeps its code, and the good envelopes around them are admitted."""
    from node.payload import envelope_entry
    from node.runtime.verification import THREAD_BATCH_MIN

    assert node.entries.threads >= 2, "the threaded path needs at least two threads"
    fairness = node.genesis.fairness
    assert fairness is not None
    good = []
    for i in range(THREAD_BATCH_MIN):
        key = (0x1000 + i).to_bytes(32, "big")
        account = address_of_private_key(key)
        good.append(
            encrypt_action(
                key, account, node.now_ms(), PLACE, node.domain, fairness.key, fairness.epoch
            )
        )
    bad = sealed(node)
    bad_cases = {
        "bad_kem_proof": with_bytes(bad, 141, bytes([bad[141] ^ 1])),
        "invalid_signature": bad[:-65] + bytes(32) + bad[-33:],
        "unauthorized_signer": sealed(node, key=STRANGER_KEY),
    }
    envelopes = [*good[:10], *bad_cases.values(), *good[10:]]
    results = await node.submit_encrypted(envelopes, False, 1)
    codes = [r.code for r in results]
    assert codes[10:13] == list(bad_cases), codes
    assert all(r.status == "accepted" for r in results[:10] + results[13:]), results
    assert all(envelope_entry(e) in node.entries.envelopes for e in good)
