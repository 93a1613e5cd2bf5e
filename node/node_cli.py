"""`seqnet node run --config FILE` and `seqnet node status`: one committee member.

`run` loads the config, genesis and keys (refusing keys that do not match genesis),
opens and verifies the data directory (refusing to start from a corrupted one rather
than sign from bad state), then runs the node and its client API until SIGTERM or
SIGINT, on which it stops cleanly: tasks cancelled, storage closed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from pathlib import Path

import structlog
import trio

from node import log as node_log
from node.config import ConfigError
from node.genesis import load_node_setup
from node.keys import KeyFileError
from node.runtime import Node, NodeOptions
from node.store.storage import CorruptStorage, open_storage

log = structlog.get_logger("seqnet.node")


async def _run(config: Path) -> int:
    from node.api.app import create_app, serve_api

    setup = load_node_setup(config)
    node_log.configure(setup.config.log_level, node=setup.member.name)
    storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
    try:
        node = Node(setup, storage, _options_from_env())
        # The engine's state is long-lived and acyclic: move it out of the collector's
        # view and collect rarely, or each full collection pauses the node for 50-100 ms
        # (measured by the matching benchmark).
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        app = create_app(node)
        async with trio.open_nursery() as nursery:
            # Signals first: a stop is honoured at once in every phase, catch-up included.
            await nursery.start(_stop_on_signal, nursery.cancel_scope)
            # The API next, so /healthz answers and /readyz says why it is not ready yet
            # while the member catches up from its peers.
            api = setup.config.api_listen
            await nursery.start(serve_api, app, api.host, api.port)
            await nursery.start(node.run)
            log.info(
                "node running",
                index=setup.index,
                consensus=str(setup.config.consensus_listen),
                api=f"http://{api.host}:{api.port}",
            )
    finally:
        storage.close()
        log.info("stopped")
    return 0


async def _stop_on_signal(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            scope.cancel()
            return


def _options_from_env() -> NodeOptions:
    """Test-only switches for the fault suite (refused off the dev chain by Node)."""
    skew = os.environ.get("SEQNET_TEST_CLOCK_SKEW_MS")
    byzantine = os.environ.get("SEQNET_TEST_BYZANTINE") or None
    if byzantine is not None and not set(byzantine.split(",")) <= {"equivocate", "double-vote"}:
        raise ConfigError(
            f"SEQNET_TEST_BYZANTINE={byzantine!r}: use equivocate, double-vote or both (a,b)"
        )
    return NodeOptions(clock_skew_ms=int(skew) if skew else 0, byzantine=byzantine)


def _status(api: str) -> int:
    import httpx

    try:
        response = httpx.get(f"{api.rstrip('/')}/v1/status", timeout=3.0)
    except httpx.HTTPError as exc:
        print(f"cannot reach {api}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2))
    return 0 if response.status_code == 200 else 1


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run one committee member")
    p_run.add_argument("--config", type=Path, required=True)
    p_status = sub.add_parser("status", help="round, committed height, leader, peers, mempool, lag")
    group = p_status.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", type=Path, help="the node's config (finds its API address)")
    group.add_argument("--api", help="the node's API URL, e.g. http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "status":
            if args.api:
                return _status(args.api)
            setup = load_node_setup(args.config)
            listen = setup.config.api_listen
            return _status(f"http://{listen.host}:{listen.port}")
        return trio.run(_run, args.config)
    except (ConfigError, KeyFileError, CorruptStorage, ValueError) as exc:
        print(f"seqnet node: {exc}", file=sys.stderr)
        return 2
