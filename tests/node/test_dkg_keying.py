"""The committee key as replicated state (node/fairness/keying.py): the DKG over committed
blocks, phases closed at committed heights, snapshots, re-keying. Pure: no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.fairness.dkg import (
    DkgConfig,
    decode_dealing,
    encode_dealing,
    make_complaint,
    make_dealing,
    member_key_from_settlement,
    member_public_key,
    seal_share,
)
from node.fairness.errors import FairnessError
from node.fairness.group import N, base_mul, mul
from node.fairness.keying import (
    MAX_RELAYED_PER_BLOCK,
    Keying,
    KeyingParams,
    KeyReady,
    MemberKeying,
    RunFailed,
    RunStarted,
    open_relayed,
    relay_label,
    relayed_entry,
)
from node.fairness.threshold import combine, create_share, encapsulate, open_ciphertext, poly_eval
from node.payload import dkg_entry, dkg_relayed_entry

PHASE = 4
SECRETS = [member_key_from_settlement(bytes([i]) * 32) for i in range(1, 8)]


def _params(n: int = 4, rekey: int = 0, chain_id: int = 7) -> KeyingParams:
    keys = tuple(member_public_key(s) for s in SECRETS[:n])
    return KeyingParams(chain_id, keys, PHASE, rekey)


class Log:
    """A committed log and the members that follow it: block h's author is whoever the
    schedule names, and it proposes its own pending DKG entries (as node/runtime does)."""

    def __init__(self, params: KeyingParams, bad_dealers: dict[int, set[int]] | None = None):
        self.params = params
        n = len(params.member_keys)
        self.members = [MemberKeying(Keying(params), i + 1, SECRETS[i]) for i in range(n)]
        self.observer = Keying(params)
        self.shares: dict[int, dict[int, object]] = {}  # epoch -> member -> share
        self.events: list[object] = []
        self.bad = bad_dealers or {}
        self.height = 0

    def deal_all(self, seed: int = 0) -> None:
        for m in self.members:
            if m.needs_dealing():
                m.deal(bytes([m.me, seed]) * 16)
                run = m.keying.run
                assert run is not None
                if m.me in self.bad:
                    bad = _bad_dealing(run.config, m.me, self.bad[m.me])
                    m._pending = [dkg_entry(bad)]

    def block(self, author: int, entries: list[bytes] | None = None) -> None:
        """Commit one block by `author` (0-based) with its pending entries (or `entries`)."""
        self.height += 1
        if entries is None:
            entries = self.members[author].pending_entries(8)
        self.events.extend(self.observer.apply_block(self.height, author, entries))
        for m in self.members:
            events = m.keying.apply_block(self.height, author, entries)
            share = m.after_block(entries, events)
            for event in events:
                if isinstance(event, KeyReady):
                    self.shares.setdefault(event.record.epoch, {})[m.me] = share

    def run_round_robin(self, blocks: int) -> None:
        n = len(self.members)
        for _ in range(blocks):
            self.deal_all()
            self.block(self.height % n)


def _bad_dealing(config: DkgConfig, dealer: int, victims: set[int]) -> bytes:
    t, n = config.threshold, config.members
    coefficients = [1000 + dealer * 10 + k for k in range(t)]
    commitments = tuple(base_mul(a) for a in coefficients)
    e = 4242 + dealer
    sealed = []
    for j in range(1, n + 1):
        value = poly_eval(coefficients, j) + (1 if j in victims else 0)
        sealed.append(
            seal_share(
                config,
                dealer,
                j,
                base_mul(e),
                mul(config.member_point(j), e),
                commitments,
                value % N,
            )
        )
    return encode_dealing(config, dealer, commitments, base_mul(e), sealed)


def _check_key_decrypts(log: Log, epoch: int, holders: list[int]) -> None:
    record = log.observer.current
    assert record is not None and record.epoch == epoch
    for m in log.members:
        assert m.keying.current == record  # every replica: the same record
    public = record.key
    ciphertext, key = encapsulate(public, b"label", b"s" * 32)
    r_point = open_ciphertext(ciphertext, b"label")
    shares = []
    for i in holders:
        share = log.shares[epoch][i]
        assert share is not None
        shares.append(create_share(share, public, r_point))  # type: ignore[arg-type]
    for start in range(len(shares) - public.threshold + 1):
        chosen = shares[start : start + public.threshold]
        assert combine(public, r_point, chosen).key == key


def test_honest_committee_gets_a_key_at_the_deadline_height() -> None:
    log = Log(_params())
    log.run_round_robin(2 * PHASE - 1)
    assert log.observer.current is None and log.observer.status() == "pending"
    log.run_round_robin(1)
    record = log.observer.current
    assert record is not None and record.height == 2 * PHASE and record.epoch == 0
    assert record.qualified == (1, 2, 3, 4)
    _check_key_decrypts(log, 0, [1, 2, 3, 4])
    assert log.observer.public_json()["status"] == "ready"


def test_bad_dealer_is_complained_against_and_disqualified_the_others_finish() -> None:
    log = Log(_params(), bad_dealers={2: {3}})
    log.run_round_robin(2 * PHASE)
    record = log.observer.current
    assert record is not None and record.qualified == (1, 3, 4)
    run_dkg = log.observer.last_finished
    assert run_dkg is not None and run_dkg.disqualified == {2: "bad_share"}
    _check_key_decrypts(log, 0, [1, 2, 3, 4])  # member 2 got good shares from the rest


def test_too_few_dealings_fail_and_the_next_epoch_runs_at_once() -> None:
    log = Log(_params())
    for _ in range(2 * PHASE):  # only member 1 leads, so only its dealing commits
        log.deal_all()
        log.block(0)
    assert any(isinstance(e, RunFailed) and e.epoch == 0 for e in log.events)
    assert RunStarted(1, 2 * PHASE) in log.events
    assert log.observer.current is None
    log.run_round_robin(2 * PHASE)
    record = log.observer.current
    assert record is not None and record.epoch == 1 and record.height == 4 * PHASE
    _check_key_decrypts(log, 1, [1, 2, 3, 4])


def test_rekey_interval_starts_a_new_epoch_and_keeps_the_old_key_until_ready() -> None:
    interval = 3 * PHASE
    log = Log(_params(rekey=interval))
    log.run_round_robin(2 * PHASE)
    first = log.observer.current
    assert first is not None and first.epoch == 0
    log.run_round_robin(interval - 2 * PHASE)
    assert RunStarted(1, interval) in log.events
    log.run_round_robin(2 * PHASE - 1)
    assert log.observer.current == first  # epoch 1 still running
    log.run_round_robin(1)
    second = log.observer.current
    assert second is not None and second.epoch == 1 and second.key != first.key
    _check_key_decrypts(log, 1, [1, 2, 3, 4])


def test_late_and_foreign_entries_change_nothing() -> None:
    params = _params()
    log = Log(params)
    log.run_round_robin(PHASE)  # dealing window over
    late = dkg_entry(make_dealing(params.config(0), 1, bytes(32)))
    assert log.observer.run is not None
    before = list(log.observer.run.kept)
    log.block(0, [late, b"\x07", b"\x07" + bytes(500), dkg_entry(b"\x02" + bytes(10))])
    assert log.observer.run.kept == before and len(before) == 4


def test_a_member_that_never_leads_deals_and_complains_through_relays() -> None:
    """Member 4 authors no block during the run (leader reputation skipped it, say): the
    others carry its dealing and its complaint against dealer 2, who spoiled its share,
    as relayed entries (tag 0x09). Member 4 is qualified, dealer 2 is not, and every
    member's share fits the key."""
    log = Log(_params(), bad_dealers={2: {4}})
    away = log.members[3]
    for height in range(2 * PHASE):
        log.deal_all()
        author = height % 3  # members 1 to 3 lead in turn
        log.block(author, log.members[author].pending_entries(8) + away.relayed_entries())
    record = log.observer.current
    assert record is not None and record.qualified == (1, 3, 4)
    run_dkg = log.observer.last_finished
    assert run_dkg is not None and run_dkg.disqualified == {2: "bad_share"}
    assert away.pending_entries(8) == []  # its relayed entries counted as committed
    _check_key_decrypts(log, 0, [1, 2, 3, 4])
    restored = Keying.decode(log.params, log.observer.encode())  # replays the relays
    assert restored.encode() == log.observer.encode()


def test_relayed_entries_count_only_with_their_members_proof() -> None:
    params = _params()
    log = Log(params)
    config = params.config(0)
    dealing = make_dealing(config, 4, bytes([4]) * 32)
    good = relayed_entry(config, 4, SECRETS[3], dealing)
    assert open_relayed(config, good) == (4, dealing)
    other_run = relayed_entry(params.config(1), 4, SECRETS[3], dealing)
    wrong_key = relayed_entry(config, 4, SECRETS[2], dealing)  # member 3's secret
    changed = good[:-1] + bytes([good[-1] ^ 1])
    as_member_3 = dkg_relayed_entry(3, good[3:67], dealing)
    out_of_range = dkg_relayed_entry(9, good[3:67], dealing)
    for bad in (other_run, wrong_key, changed, as_member_3, out_of_range, good[:67], good[:40]):
        assert open_relayed(config, bad) is None
    log.block(0, [other_run, wrong_key, changed, as_member_3, out_of_range, good[:67]])
    assert log.observer.run is not None and log.observer.run.dkg.dealing(4) is None
    # A relayed copy and the member's own entry of the same dealing: one dealing, no
    # equivocation.
    log.block(1, [good])
    log.block(3, [dkg_entry(dealing), good])
    run = log.observer.run
    assert run is not None and run.dkg.dealing(4) is not None and run.dkg.disqualified == {}
    assert [sender for sender, _ in run.kept] == [4]


def test_a_block_s_relayed_entries_past_the_bound_are_ignored() -> None:
    params = _params(n=7)
    log = Log(params)
    config = params.config(0)
    entries = [
        relayed_entry(config, m, SECRETS[m - 1], make_dealing(config, m, bytes([m]) * 32))
        for m in range(1, 8)
    ]
    filler = [entries[0]] * (MAX_RELAYED_PER_BLOCK - 1)  # duplicates use up the bound
    log.block(0, [*filler, entries[1], entries[2]])
    run = log.observer.run
    assert run is not None
    assert [sender for sender, _ in run.kept] == [1, 2]  # member 3's came too late


def test_params_are_checked() -> None:
    keys = tuple(member_public_key(s) for s in SECRETS[:4])
    with pytest.raises(FairnessError):
        KeyingParams(7, keys, 1)
    with pytest.raises(FairnessError):
        KeyingParams(7, keys, 10, 20)  # re-key within two phases


@st.composite
def _schedules(draw: st.DrawFn) -> tuple[list[tuple[int, list[int]]], int]:
    """Blocks of the dealing window: (author, dealers whose dealing it carries). Each
    dealing is in a block its dealer authored; the order of dealers is drawn."""
    order = draw(st.permutations([1, 2, 3, 4]))
    blocks: list[tuple[int, list[int]]] = []
    for dealer in order:
        empty = draw(st.integers(0, 1))
        blocks.extend((draw(st.integers(0, 3)), []) for _ in range(empty))
        blocks.append((dealer - 1, [dealer]))
    assert len(blocks) <= 2 * PHASE  # within the dealing window of 2 * PHASE blocks
    snapshot_at = draw(st.integers(1, 3 * PHASE))
    return blocks, snapshot_at


_DEALINGS = {
    i: dkg_entry(make_dealing(_params(rekey=0).config(0), i, bytes([i]) * 32)) for i in range(1, 5)
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schedules())
def test_property_any_order_of_dealings_gives_the_same_key_everywhere(
    schedule: tuple[list[tuple[int, list[int]]], int],
) -> None:
    blocks, snapshot_at = schedule
    params = KeyingParams(7, _params().member_keys, 2 * PHASE)
    log = Log(params)
    restored: Keying | None = None
    for author, dealers in blocks:
        log.block(author, [_DEALINGS[d] for d in dealers])
    while log.height < 4 * PHASE:
        log.block(log.height % 4, [])
        if log.height == snapshot_at:
            restored = Keying.decode(params, log.observer.encode())
        elif restored is not None:
            restored.apply_block(log.height, log.height % 4, [])
    record = log.observer.current
    assert record is not None and record.qualified == (1, 2, 3, 4)
    expected = combine_key(params)
    assert record.key == expected
    assert all(m.keying.current == record for m in log.members)
    assert all(log.shares[0][i] is not None for i in range(1, 5))
    if restored is not None:
        assert restored.current == record and restored.encode() == log.observer.encode()


def combine_key(params: KeyingParams) -> object:
    """The key of an honest run with _DEALINGS, fed in dealer order: the reference."""
    keying = Keying(params)
    for h in range(1, 2 * params.phase_blocks + 1):
        dealer = h if h <= 4 else None
        keying.apply_block(h, (h - 1) % 4, [] if dealer is None else [_DEALINGS[dealer]])
    assert keying.current is not None
    return keying.current.key


def _protocol_vectors() -> dict[str, Any]:
    text = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
    block = text.split("<!-- dkg-vectors:begin -->")[1].split("<!-- dkg-vectors:end -->")[0]
    loaded: dict[str, Any] = json.loads(block.strip().removeprefix("```json").removesuffix("```"))
    return loaded


def test_protocol_vectors_of_dkg_entries_and_the_key() -> None:
    v = _protocol_vectors()
    secrets = [member_key_from_settlement(bytes.fromhex(s[2:])) for s in v["settlement_secrets"]]
    keys = tuple(member_public_key(s) for s in secrets)
    assert ["0x" + k.hex() for k in keys] == v["member_keys"]
    params = KeyingParams(v["chain_id"], keys, v["phase_blocks"])
    config = params.config(v["epoch"])
    assert (config.threshold, config.members) == (v["t"], v["n"])
    assert "0x" + config.session.hex() == v["session"]
    dealings = [
        dkg_entry(make_dealing(config, i + 1, bytes.fromhex(seed[2:])))
        for i, seed in enumerate(v["dealing_seeds"])
    ]
    assert ["0x" + d.hex() for d in dealings] == v["dealing_entries"]
    first = decode_dealing(config, dealings[0][1:])
    complaint = dkg_entry(make_complaint(config, 3, secrets[2], first))
    assert "0x" + complaint.hex() == v["complaint_entry_member3_against_dealer1"]
    message = complaint[1:]
    assert "0x" + relay_label(config, 3, message).hex() == v["relay_label_member3_complaint"]
    relayed = relayed_entry(config, 3, secrets[2], message)
    assert "0x" + relayed.hex() == v["relayed_complaint_member3_against_dealer1"]
    assert open_relayed(config, relayed) == (3, message)
    keying = Keying(params)
    for h, entry in enumerate(dealings, start=1):
        keying.apply_block(h, h - 1, [entry])
    record = keying.current
    assert record is not None
    assert "0x" + record.key.encode().hex() == v["committee_key"]
    assert "0x" + record.key.key_id.hex() == v["key_id"]
    assert list(record.qualified) == v["qualified"] and record.height == v["height"]
    assert "0x" + record.transcript.hex() == v["transcript"]
