"""`seqnet node run --config FILE` and `seqnet node status`: one committee member.

`run` loads the config, genesis and keys (refusing keys that do not match genesis),
opens and verifies the data directory (refusing to start from a corrupted one rather
than sign from bad state), restores the engine, then runs the node and its client API
until SIGTERM or SIGINT, on which it stops cleanly: tasks cancelled, storage closed,
exit status 0.

A stop is honoured the same way in every phase, start-up included:

- `main` catches SIGTERM and SIGINT before anything else is done (only stdlib modules are
  imported at the top of this file; the rest takes ~1.7 s to import) with `_record_stop`,
  a plain handler that records the request;
- start-up looks at the record at safe points: before opening storage, before the engine
  restore and after it; if a stop came, it closes what it opened and exits 0;
- the engine restore (`Node(...)` replays the committed log above the latest snapshot, a
  few seconds or more for a busy member) is the one long phase, and it only reads:
  during it, a stop interrupts it at once (storage is closed, nothing was written);
- once trio's signal receiver listens, a stop cancels the run, and one recorded before
  it listened cancels it as soon as it does.

The interpreter's own start (~40 ms before `main` runs) is covered only if the launcher
blocks the two signals across `exec`: `main` unblocks them once its handler is in place,
and a pending one is delivered then.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trio

    from node.api.probe import StartupProbe
    from node.genesis import NodeSetup
    from node.runtime import Node, NodeOptions

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The first stop signal received while trio's receiver was not listening (None: none).
_stop_signal: int | None = None
# True only while the engine restore runs: a stop signal then interrupts it.
_interrupt = False


class _StopRequested(BaseException):
    """A stop signal arrived during start-up. A BaseException, as KeyboardInterrupt is,
    so that no `except Exception` in the code it interrupts takes it for an error."""


def _record_stop(signum: int, frame: FrameType | None) -> None:
    """The handler while trio's receiver is not listening. It records the stop; it raises
    only during the restore, which writes nothing. Anywhere else an exception raised
    wherever the main thread happens to be could leave a storage write half done."""
    global _stop_signal, _interrupt
    if _stop_signal is None:
        _stop_signal = signum
    if _interrupt:
        _interrupt = False  # once: never again from inside the cleanup
        raise _StopRequested("during the engine restore")


def _catch_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record_stop)
    # A launcher may block them across exec to cover interpreter start-up; a pending one
    # is delivered to _record_stop here. An inherited block would also leave the member
    # deaf to SIGTERM (trio's receiver does not unblock): never run with one.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _stop_point(at: str) -> None:
    """A start-up safe point: leave now if a stop signal was recorded."""
    if _stop_signal is not None:
        raise _StopRequested(at)


def _log() -> Any:
    import structlog

    return structlog.get_logger("seqnet.node")


async def _run(config: Path) -> int:
    global _interrupt
    from node import log as node_log
    from node.api.probe import StartupProbe, StartupProgress, listen
    from node.config import FRESH_DATA_MARK
    from node.genesis import load_node_setup
    from node.runtime import Node
    from node.store.storage import open_storage

    setup = load_node_setup(config)
    node_log.configure(setup.config.log_level, node=setup.member.name)
    log = _log()
    api = setup.config.api_listen
    # The API port opens first: until the real API takes the socket over, the probe
    # answers /healthz 200 and /readyz 503 with the restore's progress.
    sock = listen(api.host, api.port)
    progress = StartupProgress(phase="opening_storage")
    try:
        with StartupProbe(sock, progress) as probe:
            _stop_point("before opening storage")
            data_dir = setup.config.data_dir
            fresh_mark = data_dir / FRESH_DATA_MARK
            fresh = fresh_mark.exists()  # no member has run from here: it signed nothing
            storage = open_storage(data_dir, setup.genesis.genesis_hash())
            # Gone before the member can sign anything: any restart is not a first start.
            fresh_mark.unlink(missing_ok=True)
            try:
                # The restore replays the log above the latest snapshot; it logs "engine
                # restored" when done: the two lines time it.
                progress.target = storage.committed_height()
                progress.phase = "restoring"
                log.info("storage opened", committed_height=progress.target)
                _interrupt = True  # before the safe point: no signal slips in between
                try:
                    _stop_point("before the engine restore")
                    node = Node(
                        setup,
                        storage,
                        _options_from_env(),
                        on_replayed=lambda h: setattr(progress, "height", h),
                        fresh=fresh,
                    )
                finally:
                    _interrupt = False
                _stop_point("after the engine restore")
                progress.phase = "indexing"
                await _serve(setup, node, sock, probe)
            finally:
                storage.close()
    except _StopRequested as stop:
        assert _stop_signal is not None
        log.info("stopping", signal=signal.Signals(_stop_signal).name, at=str(stop))
    finally:
        sock.close()
    log.info("stopped")
    return 0


async def _serve(setup: NodeSetup, node: Node, sock: socket.socket, probe: StartupProbe) -> None:
    """Run the node and its API (on the already listening `sock`, where `probe` answers
    until the API takes it over) until a stop signal cancels them."""
    import gc

    from node.api.app import create_app
    from node.api.history import HistoryStore, Retention

    # The engine's state is long-lived and acyclic: move it out of the collector's view
    # and collect rarely, or each full collection pauses the node for 50-100 ms (measured
    # by the matching benchmark).
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    index = setup.config.index
    history = HistoryStore.open(
        setup.config.index_file,
        node.genesis_hash,
        Retention(index.retention_days, index.money_retention_days, index.candle_retention_days),
    )
    try:
        # Attaching the indexer tops its history up from the committed log (a rebuild
        # when the file is new): like the engine restore, a start-up phase that only
        # reads the node's storage.
        app = create_app(node, history=history)
        await _serve_app(setup, node, app, sock, probe)
    finally:
        history.close()


async def _serve_app(
    setup: NodeSetup, node: Node, app: Any, sock: socket.socket, probe: StartupProbe
) -> None:
    import trio

    from node.api.app import serve_api

    async with trio.open_nursery() as nursery:
        # Signals first: a stop is honoured at once in every phase, catch-up included.
        await nursery.start(_stop_on_signal, nursery.cancel_scope)
        # The API next, so /healthz answers and /readyz says why it is not ready yet
        # while the member catches up from its peers.
        api = setup.config.api_listen
        probe.stop()
        await nursery.start(partial(serve_api, app, api.host, api.port, sock=sock))
        await nursery.start(node.run)
        _log().info(
            "node running",
            index=setup.index,
            consensus=str(setup.config.consensus_listen),
            api=f"http://{api.host}:{api.port}",
        )


async def _stop_on_signal(scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
    import trio

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        # Listening now: a signal recorded before (by _record_stop, after the last safe
        # point) stops the run at once; any later one comes through the receiver.
        signum = _stop_signal
        if signum is None:
            signum = await signals.__anext__()
        _log().info("stopping", signal=signal.Signals(signum).name)
        scope.cancel()
    # Leaving the receiver put _record_stop back: a second signal during the shutdown
    # is recorded and ignored, not the default action (status -15).


def _options_from_env() -> NodeOptions:
    """Test-only switches for the fault suite (refused off the dev chain by Node)."""
    from node.config import ConfigError
    from node.runtime import NodeOptions

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
    if args.cmd == "run":
        _catch_stop_signals()  # before the imports below: they alone take ~1.7 s
    import trio

    from node.config import ConfigError
    from node.genesis import load_node_setup
    from node.keys import KeyFileError
    from node.store.storage import CorruptStorage

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
