"""A member's run-time settings (the TOML config sets some; tests set the rest)."""

from __future__ import annotations

from dataclasses import dataclass

DEV_CHAIN_ID = 31337  # anvil / localnet: the only chain where test-only modes may run


@dataclass(frozen=True, slots=True)
class NodeOptions:
    idle_block_interval_ms: int = 250  # leader waits this long for entries when idle
    batch_wait_ms: int = 0  # extra wait to fill a block when entries are few
    max_block_bytes: int = 3 << 20
    snapshot_interval_blocks: int = 1000
    wal_checkpoint_interval_s: float = 1.0  # 0: none (a store without a WAL)
    sync_gap_rounds: int = 8  # a verified QC this many rounds above ours starts a log sync
    # … or this many above our committed round (a sync that finds nothing ends at once)
    sync_commit_lag_rounds: int = 3
    sync_batch_bytes: int = 2 << 20
    sync_timeout_s: float = 3.0
    join_wait_s: float = 1.0  # at start: how long to wait for a first peer to sync from
    snapshot_sync_gap_blocks: int = 5_000  # further behind than this: install a snapshot
    # committed blocks kept below the top for peers that catch up by log (the config's
    # `history_blocks` overrides); older ones go once a snapshot covers them
    history_blocks: int = 10_000
    max_snapshot_bytes: int = 1 << 30
    verified_cache_bytes: int = 128 << 20  # verified entries waiting for their block
    bad_entry_cache_bytes: int = 16 << 20  # entries whose signature failed, by bytes
    sync_serve_per_s: float = 200.0  # sync and snapshot requests served per peer
    max_forward_batch: int = 512
    inbox: int = 4096
    inbox_bytes: int = 64 << 20  # consensus messages waiting for the consensus task
    peer_log_interval_s: float = 10.0  # one log line per peer and kind of fault per interval
    clock_alarm_ms: int = 2_000  # |offset to the committee's clock| past this: alarm
    clock_max_correction_ms: int = 7 * 24 * 3600 * 1000  # never correct by more
    clock_skew_ms: int = 0  # test-only: pretend our clock is off by this much
    # test-only misbehaviour on dev chains (fault suite): "equivocate" (as leader, also
    # send a conflicting block to half the peers) or "double-vote" (vote twice a round);
    # "bad-dealing": a DKG dealing whose last member's share is zeroed (node/fairness/keying.py);
    # "relay-dkg-only": never carry our own DKG entries in our proposals (as if we never
    # led), so only the relay (node/runtime/dkg_relay.py) gets them committed
    byzantine: str | None = None
