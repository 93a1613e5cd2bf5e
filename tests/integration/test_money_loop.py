"""The money loop on anvil with a local committee (real processes, real contracts), as
an integrator drives it through the REST history and `seqnet trade`: deposit (seen with
its chain transaction and confirmations), `withdraw --claim` (withdraw, wait for the
checkpoint to land, claim on chain, report), the claim seen on chain; then a restart of
the member keeps its history (the index file beside its storage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.settlement import balance_of
from node.chain.localchain import ChainSetup, connect
from node.genesis import ConsensusParams, load_node_setup
from node.localnet import down, pid_alive, stop_pid, up
from node.procs import free_base_port, start_node
from node.trade_cli import main as trade_main
from tests.node.cluster import wait_for

pytestmark = pytest.mark.integration


def get(api: str, path: str) -> Any:
    try:
        response = httpx.get(f"{api}{path}", timeout=10)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_withdraw_claim_loop_and_history_across_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = ConsensusParams(round_timeout_ms=1000, checkpoint_interval_blocks=10)
    net = up(tmp_path / "net", 1, free_base_port(1), 90, chain=True, consensus=params)
    folder = Path(net.folder)
    chain = ChainSetup.load(folder)
    api = net.nodes[0].api
    trader = chain.traders[0]
    account = "0x" + trader.address.hex()
    common = ["--localnet", str(folder), "--key", "0x" + trader.key.hex()]
    try:
        assert trade_main([*common, "deposit", "USDC", "1000"]) == 0
        deposits = wait_for(
            lambda: (get(api, f"/v1/accounts/{account}/deposits") or {}).get("deposits"),
            90,
            "deposit credited",
        )
        assert deposits[0]["tx_hash"].startswith("0x") and deposits[0]["confirmations"] >= 2
        assert deposits[0]["token_amount"] == str(1000 * 10**6)

        w3 = connect(chain.url)
        usdc = chain.tokens["USDC"]
        before = balance_of(w3, usdc, trader.address)
        capsys.readouterr()
        assert trade_main([*common, "withdraw", "USDC", "250", "--claim", "--timeout", "120"]) == 0
        printed = capsys.readouterr().out
        report = json.loads(printed[printed.rindex("\n{") + 1 :])
        assert report["status"] == "claimed" and report["amount"] == str(250 * 10**6)
        assert balance_of(w3, usdc, trader.address) - before == 250 * 10**6
        withdrawal_id = report["withdrawal_id"]

        def claimed() -> Any:
            found = get(api, f"/v1/withdrawals/{withdrawal_id}")
            return found if found and found["status"] == "claimed" else None

        record = wait_for(claimed, 60, "the claim seen on chain by the node")
        assert record["claim"]["tx_hash"] == report["tx_hash"]
        checkpoint = next(
            c for c in get(api, "/v1/checkpoints")["checkpoints"]
            if c["sequence"] == record["sequence"]
        )  # fmt: skip
        assert checkpoint["height"] == record["checkpoint_height"] and checkpoint["landed"]

        # A restart keeps the history: the index file, topped up from the log.
        history = {
            "deposits": get(api, f"/v1/accounts/{account}/deposits"),
            "withdrawals": get(api, f"/v1/accounts/{account}/withdrawals"),
        }
        node = net.nodes[0]
        setup = load_node_setup(Path(node.config))
        assert setup.config.index_file.exists()
        stop_pid(node.pid)
        node.pid = start_node(Path(node.config), Path(node.log))
        net.save()
        wait_for(lambda: get(api, "/readyz"), 60, "restarted member ready")
        assert pid_alive(node.pid)
        after = get(api, f"/v1/accounts/{account}/withdrawals")
        assert after["withdrawals"][0]["withdrawal_id"] == withdrawal_id
        assert after["withdrawals"][0]["proof"] == history["withdrawals"]["withdrawals"][0]["proof"]
        deposits_after = get(api, f"/v1/accounts/{account}/deposits")["deposits"]
        assert deposits_after[0]["tx_hash"] == history["deposits"]["deposits"][0]["tx_hash"]
    finally:
        down(net)
