"""Intake against a real node (a committee of one, in process): a bad copy of an intent
never censors the genuine one, a forged signer is refused at the door and charged to no
one, and a revoked agent is refused at the door and in the engine (issue 12, findings 6
and 7, agent revocation). And the per-intent size limits of PROTOCOL.md §4.5 on every
client path, before any signature is recovered (issue 16)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from node import trade_cli
from node.api.app import ApiLimits, create_app, serve_api
from node.api.facade import SubmitResult
from node.api.intake import Intake, Item
from node.api.local import LocalFacade
from node.api.ratelimit import RateLimit
from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.intents import (
    BadSignature,
    Domain,
    SignedIntent,
    address_of_private_key,
    format_address,
    intent_to_json,
    intent_to_wire,
    pack_intent,
    place_action,
    sign_intent,
    verify_intent,
)
from node.mempool import PoolItem
from node.payload import intent_entry
from node.procs import free_base_port
from node.runtime import Node, NodeOptions
from node.store.storage import open_storage
from seqnet_sdk import Client

VICTIM_KEY = (0x5EC).to_bytes(32, "big")
STRANGER_KEY = (0xBAD).to_bytes(32, "big")
AGENT_KEY = (0xA6E).to_bytes(32, "big")
VICTIM = address_of_private_key(VICTIM_KEY)
AGENT = address_of_private_key(AGENT_KEY)
CANCEL_ALL: dict[str, Any] = {"type": "cancel_all", "market": None}
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


def _nonce(node: Node, offset: int = 0) -> int:
    return node.now_ms() + offset


def signed(node: Node, action: dict[str, Any], key: bytes = VICTIM_KEY, n: int = 0) -> SignedIntent:
    return sign_intent(key, VICTIM, _nonce(node, n), action, node.domain)


def bad_copy(node: Node, genuine: SignedIntent) -> tuple[SignedIntent, bytes]:
    """The genuine intent with one bit of its signature flipped, choosing a bit after
    which some key still recovers; and that key (the copy's signer)."""
    for bit in range(8, 512):
        signature = bytearray(genuine.signature)
        signature[bit // 8] ^= 1 << (bit % 8)
        copy = SignedIntent(genuine.account, genuine.nonce, genuine.action, bytes(signature))
        try:
            return copy, verify_intent(copy, node.domain).signer
        except BadSignature:
            continue
    raise AssertionError("no bit flip recovers a key")


async def committed(node: Node, count: int) -> None:
    with trio.fail_after(20):
        while node.counters["entries_committed"] < count:
            await trio.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Finding 6: a bad copy never suppresses the genuine intent


async def test_bit_flipped_copy_sent_first_does_not_censor_the_genuine_intent(
    node: Node, nursery: trio.Nursery
) -> None:
    """Over HTTP, as the attack was made: the copy comes back `unauthorized_signer`
    under the genuine id, and the genuine intent then commits (it once came back
    `rejected unauthorized`, on every resend)."""
    port = await nursery.start(serve_api, create_app(node, ApiLimits()), "127.0.0.1", 0)
    genuine = signed(node, CANCEL_ALL)
    copy, _ = bad_copy(node, genuine)
    intent_id = "0x" + genuine.digest(node.domain).hex()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

        async def post(intent: SignedIntent, query: str = "") -> dict[str, Any]:
            response = await http.post(
                "/v1/intents" + query,
                content=orjson.dumps(intent_to_json(intent)),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()["results"][0]
            return result

        refused = await post(copy)
        assert (refused["id"], refused["status"], refused["code"]) == (
            intent_id,
            "rejected",
            "unauthorized_signer",
        )
        assert len(node.mempool) == 0  # neither pooled nor forwarded
        done = await post(genuine, "?wait=committed&timeout_ms=20000")
        assert (done["id"], done["status"]) == (intent_id, "committed"), done
        again = await post(genuine)
        assert again["status"] == "committed" and again["height"] == done["height"]


async def test_bad_copy_forwarded_by_a_peer_is_refused_too(node: Node) -> None:
    genuine = signed(node, CANCEL_ALL)
    copy, _ = bad_copy(node, genuine)
    for _ in range(2):  # verified, then from the verified-entry cache: the same answer
        answer = await node.intake.admit([copy], False, [intent_entry(pack_intent(copy))])
        assert [a.code for a in answer] == ["unauthorized_signer"]
    assert len(node.mempool) == 0
    result = await node.submit([genuine], wait=True, timeout_s=20)
    assert result[0].status == "committed", result


@pytest.mark.parametrize("same_block", [True, False])
async def test_bad_copy_in_a_block_is_not_the_genuine_intents_outcome(
    node: Node, same_block: bool
) -> None:
    """A faulty leader can still put a bad copy in a block (its signature recovers, to
    some key). The engine refuses it there; that refusal must neither become the
    outcome of the genuine intent's id nor take the genuine intent out of the mempool.
    Here the node is its own leader, and the copy goes into its mempool directly."""
    genuine = signed(node, CANCEL_ALL)
    copy, stranger = bad_copy(node, genuine)
    intent_id = genuine.digest(node.domain)
    before = node.counters["entries_committed"]

    def pool(intent: SignedIntent, signer: bytes) -> None:
        raw = intent_entry(pack_intent(intent))
        item = PoolItem(intent_id, VICTIM, signer, intent.nonce, True, raw)
        assert node.mempool.add(item).value == "added"

    pool(copy, stranger)
    if same_block:  # both pending at once, the copy first: one block carries both
        pool(genuine, VICTIM)
        await committed(node, before + 2)
    else:  # the copy commits alone first
        await committed(node, before + 1)
        assert node.outcomes.result(intent_id) is None  # the refused copy is nobody's outcome
    result = await node.submit([genuine], wait=True, timeout_s=20)
    assert result[0].status == "committed", result
    assert node.outcomes.result(intent_id) == SubmitResult(
        intent_id, "committed", height=result[0].height
    )
    assert len(node.mempool) == 0


# ---------------------------------------------------------------------------------------
# Finding 7: a forged signer is refused at intake and charged to no one


async def test_forged_signer_is_refused_at_intake_and_not_charged_to_the_victim(
    node: Node,
) -> None:
    limit = RateLimit(rate_per_s=0.001, burst=20, cancel_cost=0.5, reserve=2)
    intake = Intake(node, ApiLimits(ip_limit=None, account_limit=limit))
    forged: list[Item] = [
        sign_intent(STRANGER_KEY, VICTIM, _nonce(node, i), CANCEL_ALL, node.domain)
        for i in range(30)  # more intents than the victim's bucket holds orders
    ]
    answers = await intake.submit("attacker", forged, wait=False, timeout_s=1)
    assert {a["code"] for a in answers} == {"unauthorized_signer"}
    assert [a["id"] for a in answers] == [f.digest(node.domain) for f in forged]  # type: ignore[union-attr]
    assert intake._accounts is not None
    assert intake._accounts.tokens(VICTIM, trio.current_time()) == limit.burst
    assert len(node.mempool) == 0  # no slot, no quota, nothing forwarded
    assert node.counters["intents_admitted"] == 0
    # The victim's own intents go through at its full rate.
    own: list[Item] = [signed(node, PLACE, n=i) for i in range(10)]
    answers = await intake.submit("victim", own, wait=False, timeout_s=1)
    assert [a["status"] for a in answers] == ["accepted"] * 10


# ---------------------------------------------------------------------------------------
# Agent revocation, through intake and the engine


async def test_revoked_agent_is_refused_at_intake_and_by_the_engine(node: Node) -> None:
    def by_agent(n: int) -> SignedIntent:
        return sign_intent(AGENT_KEY, VICTIM, _nonce(node, n), CANCEL_ALL, node.domain)

    early = await node.submit([by_agent(0)], wait=False, timeout_s=1)
    assert early[0].code == "unauthorized_signer"  # not approved yet
    approve = signed(node, {"type": "approve_agent", "agent": AGENT, "name": "bot"}, n=1)
    assert (await node.submit([approve], wait=True, timeout_s=20))[0].status == "committed"
    assert (await node.submit([by_agent(2)], wait=True, timeout_s=20))[0].status == "committed"
    # Admitted before the revocation, applied after it (a place: not a cancel, which a
    # block would apply first): refused by the engine, and so not the id's outcome.
    in_flight = sign_intent(AGENT_KEY, VICTIM, _nonce(node, 3), PLACE, node.domain)
    revoke = signed(node, {"type": "revoke_agent", "agent": AGENT}, n=4)
    before = node.counters["entries_committed"]
    answers = await node.submit([revoke, in_flight], wait=False, timeout_s=1)
    assert [a.status for a in answers] == ["accepted", "accepted"]
    done = await node.submit([revoke], wait=True, timeout_s=20)
    assert done[0].status == "committed", done
    assert not node.engine.is_authorized(VICTIM, AGENT)
    await committed(node, before + 2)
    assert node.outcomes.result(in_flight.digest(node.domain)) is None
    assert not node.engine.open_orders(VICTIM)
    for late in (in_flight, by_agent(5)):  # resent, or new: a clear answer at the door
        answer = await node.submit([late], wait=False, timeout_s=1)
        assert answer[0].code == "unauthorized_signer"
    twice = signed(node, {"type": "revoke_agent", "agent": AGENT}, n=6)
    again = await node.submit([twice], wait=True, timeout_s=20)
    assert (again[0].status, again[0].code) == ("rejected", "unknown_agent")
    assert again[0].height is not None
    forged = sign_intent(AGENT_KEY, VICTIM, _nonce(node, 7), twice.action, node.domain)
    refused = await node.submit([forged], wait=False, timeout_s=1)
    assert refused[0].code == "signer_not_account"  # only the account revokes


async def test_sdk_and_trade_cli_approve_and_revoke_agents(
    node: Node, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    port = await nursery.start(serve_api, create_app(node, ApiLimits()), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    async with (
        Client(url, VICTIM_KEY, timeout_s=20) as owner,
        Client(url, AGENT_KEY, account=VICTIM, timeout_s=20) as agent,
    ):
        assert (await owner.approve_agent(AGENT, "bot")).status == "committed"
        assert (await agent.cancel_all()).status == "committed"
        assert (await agent.revoke_agent(AGENT)).code == "signer_not_account"
        assert (await owner.revoke_agent(format_address(AGENT))).status == "committed"
        assert (await agent.cancel_all()).code == "unauthorized_signer"

        def trade(*args: str) -> int:
            return trade_cli.main(["--api", url, "--key", "0x" + VICTIM_KEY.hex(), *args])

        approve = ("agent", "approve", format_address(AGENT), "b2")
        assert await trio.to_thread.run_sync(trade, *approve) == 0
        assert (await agent.cancel_all()).status == "committed"
        assert await trio.to_thread.run_sync(trade, "agent", "revoke", format_address(AGENT)) == 0
        assert (await agent.cancel_all()).code == "unauthorized_signer"
        assert await trio.to_thread.run_sync(trade, "agent", "revoke", format_address(AGENT)) == 1
    assert '"code": "unknown_agent"' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# Per-intent size limits (PROTOCOL.md §4.5): 2,048 bytes of JSON, 1,024 of msgpack


def padded_json(intent: SignedIntent, size: int = 3400) -> str:
    """The intent's JSON with whitespace after its first brace, `size` bytes in all: a
    well-formed, validly signed intent over the limit."""
    text = orjson.dumps(intent_to_json(intent)).decode()
    return text.replace("{", "{" + " " * (size - len(text)), 1)


def padded_msgpack(intent: SignedIntent) -> bytes:
    """The intent's msgpack map with its signature entry repeated 20 times (unpacking
    keeps the last): well formed, validly signed, ~1.5 KB."""
    packer = msgpack.Packer(use_bin_type=True)
    wire = intent_to_wire(intent)
    out: bytes = packer.pack_map_header(4 + 19)
    for key in ("action", "account", "nonce"):
        out += packer.pack(key) + packer.pack(wire[key])
    out += (packer.pack("signature") + packer.pack(intent.signature)) * 20
    return out


@pytest.fixture
async def local_api(nursery: trio.Nursery) -> tuple[str, LocalFacade]:
    """The API over a `LocalFacade`, whose `verified` counts recovered signatures."""
    facade = LocalFacade(DOMAIN)
    limits = ApiLimits(ip_limit=None, account_limit=None)
    port = await nursery.start(serve_api, create_app(facade, limits), "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}", facade


DOMAIN = Domain(31337, bytes(20))
_NONCES = iter(range(1_700_000_000_000, 1_800_000_000_000))


def fresh() -> SignedIntent:
    return sign_intent(VICTIM_KEY, VICTIM, next(_NONCES), PLACE, DOMAIN)


async def test_a_3_4_kb_intent_is_refused_on_http_before_its_signature_is_checked(
    local_api: tuple[str, LocalFacade],
) -> None:
    url, facade = local_api
    big = padded_json(fresh())
    assert len(big) == 3400 and orjson.loads(big)  # a good intent, but for its size
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url) as http:
        single = await http.post("/v1/intents", content=big, headers=headers)
        assert single.status_code == 413, single.text
        assert single.json()["error"]["code"] == "too_large"
        assert facade.verified == 0
        # In a batch, each intent is answered for itself; the layout does not matter.
        for separator in (",", ",\n  "):
            items = [orjson.dumps(intent_to_json(fresh())).decode(), big, padded_json(fresh())]
            items[2] = items[2].replace(" " * 1352, "", 1)  # 2,048 bytes: at the limit
            body = '{"intents": [' + separator.join(items) + "]}"
            batch = await http.post("/v1/intents", content=body, headers=headers)
            assert batch.status_code == 200, batch.text
            results = batch.json()["results"]
            assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
            assert results[1] == {
                "id": None,
                "status": "rejected",
                "code": "too_large",
                "message": "intent larger than 2048 bytes",
            }
    assert facade.verified == 4  # the two good intents of each batch, never the big one


async def test_a_3_4_kb_intent_is_refused_on_the_websocket_before_its_signature_is_checked(
    local_api: tuple[str, LocalFacade],
) -> None:
    url, facade = local_api
    async with open_websocket_url(url.replace("http://", "ws://") + "/v1/ws") as ws:
        body = ", ".join([orjson.dumps(intent_to_json(fresh())).decode(), padded_json(fresh())])
        await ws.send_message('{"id": 1, "intents": [' + body + "]}")
        with trio.fail_after(10):
            text = orjson.loads(await ws.get_message())
        packed = {"id": 2, "intents": [pack_intent(fresh()), pack_intent(fresh()) + bytes(1100)]}
        await ws.send_message(msgpack.packb(packed))
        packer = msgpack.Packer(use_bin_type=True)
        frame = (
            packer.pack_map_header(2)
            + packer.pack("id")
            + packer.pack(3)
            + packer.pack("intents")
            + packer.pack_array_header(2)
            + packer.pack(intent_to_wire(fresh()))
            + padded_msgpack(fresh())
        )
        await ws.send_message(frame)
        with trio.fail_after(10):
            answers = [msgpack.unpackb(await ws.get_message()) for _ in range(2)]
    binary = {answer["id"]: answer["results"] for answer in answers}
    for results in (text["results"], binary[2], binary[3]):
        assert [r["status"] for r in results] == ["accepted", "rejected"], results
        assert results[1]["code"] == "too_large"
    assert text["id"] == 1
    assert facade.verified == 3
