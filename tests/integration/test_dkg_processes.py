"""Four members of a non-development chain as separate `seqnet node run` processes on
127.0.0.1: they run epoch 0's DKG over their committed log at start, every API reports
the same ready key, and an encrypted intent sealed to it executes (PROTOCOL.md §10.9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.fairness.threshold import ThresholdPublicKey
from node.genesis import committee_init, load_node_setup
from node.intents import address_of_private_key, place_action, sign_intent
from node.procs import free_base_port, start_node, stop_pid
from seqnet_sdk.encrypted import encrypt_intent
from tests.node.cluster import _nonces, trader_key, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def committee(tmp_path: Path) -> Iterator[list[str]]:
    committee_init(tmp_path, 4, base_port=free_base_port(4), chain_id=4242)
    pids, apis = [], []
    try:
        for i in range(4):
            config = tmp_path / f"node{i}" / "config.toml"
            pids.append(start_node(config, tmp_path / f"node{i}.log"))
            api = load_node_setup(config).config.api_listen
            apis.append(f"http://{api.host}:{api.port}")
        yield apis
    finally:
        for pid in pids:
            stop_pid(pid)


def key_of(api: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{api}/v1/fairness/key", timeout=5)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = response.json()
    return body if response.status_code == 200 and body.get("status") == "ready" else None


def test_processes_run_the_dkg_and_execute_an_encrypted_intent(
    committee: list[str], tmp_path: Path
) -> None:
    keys = [wait_for(lambda api=api: key_of(api), 120, f"key at {api}") for api in committee]
    assert all(k == keys[0] for k in keys), keys
    key = keys[0]
    assert key["epoch"] == 0 and len(key["qualified"]) >= 2
    setup = load_node_setup(tmp_path / "node0" / "config.toml")
    domain = setup.genesis.domain()
    trader = trader_key(1)
    intent = sign_intent(
        trader,
        address_of_private_key(trader),
        next(_nonces),
        place_action(0, "buy", 3_000_000, 5_000_000),
        domain,
    )
    public = ThresholdPublicKey.decode(bytes.fromhex(key["committee_key"][2:]))
    envelope = encrypt_intent(intent, public, key["epoch"], domain, trader)
    response = httpx.post(
        f"{committee[1]}/v1/intents/encrypted?wait=committed&timeout_ms=30000",
        json={"envelope": "0x" + envelope.hex()},
        timeout=40,
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    # Opened and run by the engine (the trader has no funds), not `undecryptable`.
    assert result["code"] == "insufficient_balance" and result.get("height"), result
