"""`seqnet admin list-series sign|submit` (node/admin_cli.py): three members' operators sign
the terms with their identity key files from `committee init`, the signatures verify
against genesis, and `submit` combines them and posts the listing, which the node lists;
an outsider's key, mismatched terms and a short quorum are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus.crypto import Ed25519Scheme
from node.admin_cli import main
from node.api.app import create_app, serve_api
from node.genesis import committee_init, load_genesis, load_node_setup
from node.keys import NodeKeys, write_node_keys
from node.listing import signing_bytes, terms_of
from tests.api.test_listing_api import SERIES, ListingNode, terms
from tests.api.test_option_api import OPEN


def sign(tmp_path: Path, member: int, table: dict[str, Any], out: Path) -> int:
    setup = load_node_setup(tmp_path / f"node{member}" / "config.toml")
    (tmp_path / "terms.json").write_text(json.dumps(table))
    return main(
        ["list-series", "sign", "--genesis", str(tmp_path / "genesis.toml"),
         "--identity-key", str(setup.config.identity_key), "--terms",
         str(tmp_path / "terms.json"), "--out", str(out)],
        prog="seqnet admin",
    )  # fmt: skip


async def test_sign_then_submit(tmp_path: Path, nursery: trio.Nursery) -> None:
    committee_init(tmp_path, 4, perps=True)
    genesis = load_genesis(tmp_path / "genesis.toml")
    keys = tuple(m.ed25519_pubkey for m in genesis.members)
    table = terms()
    files = [tmp_path / f"n{i}.sig.json" for i in range(4)]
    for i in (0, 1, 3):
        assert sign(tmp_path, i, table, files[i]) == 0
    for i in (0, 1, 3):
        signed = json.loads(files[i].read_text())
        assert signed["member"] == i and signed["terms"] == table
        assert signed["genesis_hash"] == "0x" + genesis.genesis_hash().hex()
        message = signing_bytes(genesis.genesis_hash(), terms_of(table))
        assert Ed25519Scheme().verify(keys[i], message, bytes.fromhex(signed["signature"][2:]))
    node = ListingNode(genesis.genesis_hash(), keys)
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    api = f"http://127.0.0.1:{port}"
    terms_file = str(tmp_path / "terms.json")

    def submit(*paths: Path) -> int:
        argv = ["list-series", "submit", "--terms", terms_file, "--api", api]
        return main([*argv, *map(str, paths)], prog="seqnet admin")

    assert await trio.to_thread.run_sync(submit, files[0], files[1]) == 1  # short of 3
    assert await trio.to_thread.run_sync(submit, files[0], files[0], files[1]) == 1  # twice
    assert await trio.to_thread.run_sync(submit, files[0], files[1], files[3]) == 0
    options = node.engine.options
    assert options is not None and SERIES in options.series


def test_an_outsiders_key_and_other_terms_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committee_init(tmp_path, 4, perps=True)
    paths = write_node_keys(NodeKeys.generate("outsider"), tmp_path / "outsider")
    (tmp_path / "terms.json").write_text(json.dumps(terms()))
    code = main(
        ["list-series", "sign", "--genesis", str(tmp_path / "genesis.toml"),
         "--identity-key", str(paths.identity), "--terms", str(tmp_path / "terms.json")],
        prog="seqnet admin",
    )  # fmt: skip
    assert code == 1 and "not the identity key of a genesis member" in capsys.readouterr().err
    assert sign(tmp_path, 0, terms(), tmp_path / "a.json") == 0
    (tmp_path / "other.json").write_text(json.dumps(terms(strike=1)))
    code = main(
        ["list-series", "submit", "--terms", str(tmp_path / "other.json"), "--api",
         "http://127.0.0.1:9", str(tmp_path / "a.json")],
        prog="seqnet admin",
    )  # fmt: skip
    assert code == 1 and "not a signature of these terms" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    (tmp_path / "terms.json").write_text(json.dumps(terms(right="both")))
    code = main(
        ["list-series", "sign", "--genesis", str(tmp_path / "genesis.toml"), "--identity-key",
         str(load_node_setup(tmp_path / "node0" / "config.toml").config.identity_key),
         "--terms", str(tmp_path / "terms.json"), "--out", str(bad)],
        prog="seqnet admin",
    )  # fmt: skip
    assert code == 1 and not bad.exists()
