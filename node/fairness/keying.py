"""The committee key as replicated state: the DKG (node/fairness/dkg.py) run over the
committed log, with its phases closed at committed heights (docs/PROTOCOL.md §10.9).

Pure: no trio, no clock, no randomness, no files. `Keying` is what every replica
computes from the committed blocks alone, in order: it feeds each block's DKG entries
(tag 0x07, sent by the block's author) to an *observer* DKG, closes the dealing phase
after `phase_blocks` blocks and finishes after as many more, so every honest replica
gets the same qualified set, committee key and epoch at the same height. A member's DKG
message may also ride in another member's block (tag 0x09, `relayed_entry`), with a
Schnorr proof under the member's DKG key bound to the run and the message, so a member
that does not lead during a phase still deals and complains. `MemberKeying`
adds what only member i can do from the same log: deal, complain about a bad share
addressed to it, and derive its secret share when the key is ready. The node (I/O)
gives it 32 random bytes per run, puts its pending entries into its own proposals, and
stores the share it hands out.

Schedule of a run for epoch e that starts at height S (S = 0 at genesis):
- blocks S+1 … S+P carry dealings (a dealing in a later block is late, ignored);
- blocks S+P+1 … S+2P carry complaints (complaints in the dealing window count too);
- after block S+2P: the key of epoch e is ready (at least t qualified dealers), or the
  run failed and the run of epoch e+1 starts at once, at S+2P.
With `rekey_interval_blocks` R > 0, a run for the next epoch also starts after every
block whose height is a multiple of R (unless one is running); the old key stays
current until the new one is ready, and still opens envelopes for `grace` blocks after
(`opening_keys`). An envelope sealed to another epoch is rejected `undecryptable`
(FAIRNESS.md). A member restored by a snapshot taken after a run derives its share from
the run's dealings as a peer sends them, judged against the key record
(`recover_share`, PROTOCOL.md §10.10).

State is bounded: a run keeps one dealing per member and one complaint per (complainer,
dealer) pair; a message that changes nothing is not kept. `encode`/`decode` give the
state for member snapshots; the run's kept messages replay to the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from node.fairness.dkg import (
    Completed,
    Dealing,
    Dkg,
    DkgConfig,
    Failed,
    decode_dealing,
    make_complaint,
    make_dealing,
    open_own_share,
    transcript_of,
)
from node.fairness.errors import FairnessError
from node.fairness.group import N, base_mul, encode_point, hash_bytes, scalar_bytes, u16
from node.fairness.proofs import prove_knowledge, verify_knowledge
from node.fairness.threshold import KeyShare, ThresholdPublicKey
from node.payload import TAG_DKG, TAG_DKG_RELAYED, dkg_entry, dkg_relayed_entry

KEYING_FORMAT: Final = 2  # 2 added the previous key record (1 still reads)
_DEALING_SEED: Final = b"seqnet/dkg/dealing-seed/v1"
DKG_TAG: Final = bytes((TAG_DKG,))
DKG_RELAYED_TAG: Final = bytes((TAG_DKG_RELAYED,))
RELAY_HEADER_BYTES: Final = 1 + 2 + 64  # tag, sender, proof
# Relayed entries a block's keying step judges (each costs a proof check); later ones in
# the same block are ignored. A proposal carries at most this many (node/runtime).
MAX_RELAYED_PER_BLOCK: Final = 8
_RELAY: Final = b"seqnet/dkg/relay/v1"
MIN_PHASE_BLOCKS: Final = 2
MAX_PHASE_BLOCKS: Final = 100_000


@dataclass(frozen=True, slots=True)
class KeyingParams:
    """Genesis's DKG parameters: the members' DKG public keys (member order), the
    length of each phase in committed blocks, the re-key interval (0: never), and the
    grace after a re-key during which the previous key still opens envelopes (None:
    one phase, `phase_blocks`)."""

    chain_id: int
    member_keys: tuple[bytes, ...]
    phase_blocks: int
    rekey_interval_blocks: int = 0
    grace_blocks: int | None = None

    def __post_init__(self) -> None:
        if not MIN_PHASE_BLOCKS <= self.phase_blocks <= MAX_PHASE_BLOCKS:
            raise FairnessError(
                "bad_config", f"phase_blocks must be in {MIN_PHASE_BLOCKS} … {MAX_PHASE_BLOCKS}"
            )
        if self.rekey_interval_blocks and self.rekey_interval_blocks <= 2 * self.phase_blocks:
            raise FairnessError(
                "bad_config", "rekey_interval_blocks must exceed two phases (or be 0: off)"
            )
        if self.grace_blocks is not None and not 0 <= self.grace_blocks <= MAX_PHASE_BLOCKS:
            raise FairnessError("bad_config", f"grace_blocks must be in 0 … {MAX_PHASE_BLOCKS}")

    @property
    def grace(self) -> int:
        """Blocks after a re-key in which the previous key still opens envelopes."""
        return self.phase_blocks if self.grace_blocks is None else self.grace_blocks

    @property
    def threshold(self) -> int:
        return (len(self.member_keys) - 1) // 3 + 1

    def config(self, epoch: int) -> DkgConfig:
        return DkgConfig(self.chain_id, epoch, self.threshold, self.member_keys)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A ready committee key: what `GET /v1/fairness/key` and envelopes use."""

    epoch: int
    key: ThresholdPublicKey
    height: int  # the committed height after which it is current
    qualified: tuple[int, ...]
    transcript: bytes

    def to_wire(self) -> list[Any]:
        return [self.epoch, self.key.encode(), self.height, list(self.qualified), self.transcript]

    @classmethod
    def from_wire(cls, raw: Any) -> KeyRecord:
        epoch, key, height, qualified, transcript = raw
        return cls(epoch, ThresholdPublicKey.decode(key), height, tuple(qualified), transcript)


# Events for the member (what changed at this block)


@dataclass(frozen=True, slots=True)
class RunStarted:
    epoch: int
    start_height: int


@dataclass(frozen=True, slots=True)
class KeyReady:
    record: KeyRecord


@dataclass(frozen=True, slots=True)
class RunFailed:
    epoch: int
    code: str
    detail: str


KeyingEvent = RunStarted | KeyReady | RunFailed


class DkgRun:
    """One DKG run as every replica sees it: the observer machine and the messages that
    changed it (for snapshots)."""

    def __init__(self, params: KeyingParams, epoch: int, start_height: int) -> None:
        self.epoch = epoch
        self.start_height = start_height
        self.config = params.config(epoch)
        self.dkg = Dkg(self.config, None, None)
        self.kept: list[tuple[int, bytes]] = []  # (sender, message), in committed order
        self.closed_at: int | None = None  # len(kept) when the dealing phase closed

    def close_dealings(self) -> None:
        self.dkg.close_dealings()
        self.closed_at = len(self.kept)

    def receive(self, sender: int, message: bytes) -> bool:
        before = self.dkg.state_size()
        self.dkg.receive(sender, message)
        changed = self.dkg.state_size() != before
        if changed:
            self.kept.append((sender, message))
        return changed


class Keying:
    """The replicated committee-key state of one replica, driven by committed blocks.

    `apply_block(height, author, entries)` once per committed block in height order
    (author: the block author's 0-based member index; entries: the payload without its
    signers entry). It returns what changed; `current` is the key envelopes use."""

    def __init__(self, params: KeyingParams) -> None:
        self.params = params
        self.current: KeyRecord | None = None
        # The key `current` replaced: it still opens envelopes for `params.grace` blocks.
        self.previous: KeyRecord | None = None
        self.run: DkgRun | None = DkgRun(params, 0, 0)
        self.height = 0
        # The run that made `current`, until the next block: members derive their share
        # from its dealings (MemberKeying.share_of); not replicated, not snapshotted.
        self.last_finished: Dkg | None = None

    @property
    def members(self) -> int:
        return len(self.params.member_keys)

    def finished_dealings(self, record: KeyRecord) -> list[Dealing] | None:
        """The qualified dealings of the run that made `record`, in `record.qualified`
        order, at the block that made it (None at any other block)."""
        finished = self.last_finished
        if finished is None or finished.config.epoch != record.epoch:
            return None
        dealings = [finished.dealing(dealer) for dealer in record.qualified]
        if any(d is None for d in dealings):
            return None
        return [d for d in dealings if d is not None]

    def opening_keys(self) -> dict[int, ThresholdPublicKey]:
        """The keys that open envelopes in the next block (epoch -> key), decided by
        committed heights only: the current key, and the one it replaced during the
        `params.grace` blocks after the current one got ready (blocks H+1 … H+G)."""
        current = self.current
        if current is None:
            return {}
        keys = {current.epoch: current.key}
        previous = self._in_grace(current)
        if previous is not None:
            keys[previous.epoch] = previous.key
        return keys

    def _in_grace(self, current: KeyRecord) -> KeyRecord | None:
        """The key `current` replaced while it still opens envelopes: during the
        `params.grace` blocks after `current` got ready."""
        if self.previous is not None and self.height < current.height + self.params.grace:
            return self.previous
        return None

    def status(self) -> str:
        return "pending" if self.current is None else "ready"

    def apply_block(self, height: int, author: int, entries: Iterable[bytes]) -> list[KeyingEvent]:
        assert height == self.height + 1, f"keying at {self.height}, block {height}"
        assert 0 <= author < self.members
        self.height = height
        self.last_finished = None
        run = self.run
        if run is not None:
            relayed = 0
            for entry in entries:
                tag = entry[:1]
                if tag == DKG_TAG:
                    run.receive(author + 1, entry[1:])
                elif tag == DKG_RELAYED_TAG and relayed < MAX_RELAYED_PER_BLOCK:
                    relayed += 1
                    opened = open_relayed(run.config, entry)
                    if opened is not None:
                        run.receive(*opened)
            return self._deadlines(run, height)
        interval = self.params.rekey_interval_blocks
        if interval and height % interval == 0:
            epoch = 0 if self.current is None else self.current.epoch + 1
            self.run = DkgRun(self.params, epoch, height)
            return [RunStarted(epoch, height)]
        return []

    def _deadlines(self, run: DkgRun, height: int) -> list[KeyingEvent]:
        phase = self.params.phase_blocks
        if height == run.start_height + phase:
            run.close_dealings()
        if height < run.start_height + 2 * phase:
            return []
        (outcome,) = run.dkg.finish()
        if isinstance(outcome, Completed):
            result = outcome.result
            record = KeyRecord(
                run.epoch, result.public, height, result.qualified, result.transcript
            )
            self.previous = self.current
            self.current, self.run, self.last_finished = record, None, run.dkg
            return [KeyReady(record)]
        assert isinstance(outcome, Failed)
        self.run = DkgRun(self.params, run.epoch + 1, height)
        return [
            RunFailed(run.epoch, outcome.code, outcome.detail),
            RunStarted(run.epoch + 1, height),
        ]

    # -- snapshots -----------------------------------------------------------------------

    def encode(self) -> bytes:
        run = self.run
        wire = [
            KEYING_FORMAT,
            self.height,
            None if self.current is None else self.current.to_wire(),
            None
            if run is None
            else [run.epoch, run.start_height, run.closed_at, [[s, m] for s, m in run.kept]],
            None if self.previous is None else self.previous.to_wire(),
        ]
        data: bytes = msgpack.packb(wire, use_bin_type=True)
        return data

    @classmethod
    def decode(cls, params: KeyingParams, data: bytes) -> Keying:
        version, height, current, run, *rest = msgpack.unpackb(data, raw=False)
        if version not in (1, KEYING_FORMAT) or len(rest) != version - 1:
            raise ValueError(f"keying state format {version} (this build reads 1, 2)")
        keying = cls(params)
        keying.height = height
        keying.current = None if current is None else KeyRecord.from_wire(current)
        previous = rest[0] if rest else None
        keying.previous = None if previous is None else KeyRecord.from_wire(previous)
        keying.run = None
        if run is not None:
            epoch, start_height, closed_at, kept = run
            restored = DkgRun(params, epoch, start_height)
            for i, (sender, message) in enumerate(kept):
                if i == closed_at:
                    restored.close_dealings()
                restored.receive(sender, message)
            if closed_at == len(kept):
                restored.close_dealings()
            if restored.kept != [tuple(k) for k in kept]:
                raise ValueError("keying state: the run's messages do not replay")
            keying.run = restored
        return keying

    def public_json(self) -> dict[str, Any]:
        """What `GET /v1/fairness/key` answers in DKG mode."""
        n, t = self.members, self.params.threshold
        record = self.current
        if record is None:
            run = self.run
            return {
                "status": "pending",
                "epoch": None if run is None else run.epoch,
                "t": t,
                "n": n,
                "committee_key": None,
                "key_id": None,
            }
        return {
            "status": "ready",
            "epoch": record.epoch,
            "t": t,
            "n": n,
            "committee_key": "0x" + record.key.encode().hex(),
            "key_id": "0x" + record.key.key_id.hex(),
            "height": record.height,
            "qualified": list(record.qualified),
            "verification_keys": ["0x" + v.hex() for v in record.key.verification_shares],
            "pending_epoch": None if self.run is None else self.run.epoch,
            **self._grace_json(record),
        }

    def _grace_json(self, current: KeyRecord) -> dict[str, int | None]:
        """The key `current` replaced while it still opens envelopes (`_in_grace`, as
        `opening_keys`): its epoch and the last block height that opens them, so a client
        that sealed to it knows how long it has; nulls outside a grace."""
        previous = self._in_grace(current)
        if previous is None:
            return {"grace_epoch": None, "grace_until_height": None}
        return {
            "grace_epoch": previous.epoch,
            "grace_until_height": current.height + self.params.grace,
        }


class MemberKeying:
    """Member `me` (1-based)'s side of the DKG over the same committed log: its own
    entries to propose, and its share of each key. Pure: the seeds are arguments."""

    def __init__(self, keying: Keying, me: int, secret: int) -> None:
        assert 1 <= me <= keying.members and 0 < secret < N
        self.keying = keying
        self.me = me
        self._secret = secret
        self._pending: list[bytes] = []  # entries to propose until they commit
        # (run session, entry) -> its relayed form: the proof is deterministic, made once
        self._relayed: dict[tuple[bytes, bytes], bytes] = {}
        self._dealt_epoch: int | None = None
        self._complained: set[tuple[int, int]] = set()  # (epoch, dealer)

    def following(self, keying: Keying) -> MemberKeying:
        """This member over another keying state (one restored from a snapshot)."""
        return MemberKeying(keying, self.me, self._secret)

    def spoil_dealing(self, spoil: Callable[[bytes], bytes]) -> None:
        """Test-only (Byzantine dealer, dev chain): replace our pending entries by
        `spoil(entry)`; `spoil` must be idempotent, or we would send two dealings."""
        self._pending = [spoil(e) for e in self._pending]

    def pending_entries(self, max_entries: int) -> list[bytes]:
        """Our DKG entries for our next proposal (they stay until committed)."""
        return self._pending[:max_entries]

    def relayed_entries(self) -> list[bytes]:
        """Our pending DKG entries in the form any member's block may carry (tag 0x09),
        for the peers to relay while we do not lead (node/runtime/dkg_relay.py)."""
        run = self.keying.run
        if run is None:
            return []
        out = []
        for entry in self._pending:
            key = (run.config.session, entry)
            relayed = self._relayed.get(key)
            if relayed is None:
                relayed = relayed_entry(run.config, self.me, self._secret, entry[1:])
                if len(self._relayed) >= 4 * (self.keying.members + 1):
                    self._relayed.clear()
                self._relayed[key] = relayed
            out.append(relayed)
        return out

    def dealing_seed(self) -> bytes:
        """The seed of our dealing for the running run: derived from our DKG secret and
        the run's session (RFC 6979's idea), so a member that restarts mid-run deals the
        very same bytes again (a second, different dealing would disqualify it as an
        equivocation) and needs no stored randomness. Unpredictable without the secret;
        a fresh polynomial per run, since every run has its own session."""
        run = self.keying.run
        assert run is not None
        return hash_bytes(_DEALING_SEED, scalar_bytes(self._secret), run.config.session)

    def deal(self, seed: bytes | None = None) -> None:
        """Add our dealing for the running epoch (once per run); `seed`: 32 bytes, by
        default `dealing_seed()`."""
        run = self.keying.run
        if run is None or self._dealt_epoch == run.epoch:
            return
        if self.keying.height >= run.start_height + self.keying.params.phase_blocks:
            return  # too late for this run
        self._dealt_epoch = run.epoch
        seed = self.dealing_seed() if seed is None else seed
        self._pending = [dkg_entry(make_dealing(run.config, self.me, seed))]

    def needs_dealing(self) -> bool:
        run = self.keying.run
        return (
            run is not None
            and self._dealt_epoch != run.epoch
            and self.keying.height < run.start_height + self.keying.params.phase_blocks
        )

    def after_block(self, entries: Iterable[bytes], events: list[KeyingEvent]) -> KeyShare | None:
        """After `keying.apply_block` for a committed block: drop our entries that it
        carried, complain about dealings whose share for us is bad, and, when a key got
        ready, return our share of it (None: no key, or no valid share for us)."""
        committed = set(entries)
        run = self.keying.run
        # Ours are done once committed, by us or relayed by another member: the run then
        # has the message (a relayed copy with a bad proof does not count).
        received = set() if run is None else {m for s, m in run.kept if s == self.me}
        self._pending = [e for e in self._pending if e not in committed and e[1:] not in received]
        for event in events:
            if isinstance(event, RunStarted | RunFailed):
                self._pending = []
                self._complained.clear()  # judged dealings of runs that are over
        if run is not None:
            self._check_dealings(run)
        for event in events:
            if isinstance(event, KeyReady):
                return self.share_of(event.record)
        return None

    def _check_dealings(self, run: DkgRun) -> None:
        if self.keying.height >= run.start_height + 2 * self.keying.params.phase_blocks:
            return
        for dealer in range(1, self.keying.members + 1):
            dealing = run.dkg.dealing(dealer)
            if dealing is None or (run.epoch, dealer) in self._complained:
                continue
            self._complained.add((run.epoch, dealer))  # judged once, good or bad
            if open_own_share(run.config, dealing, self.me, self._secret) is None:
                complaint = make_complaint(run.config, self.me, self._secret, dealing)
                self._pending.append(dkg_entry(complaint))

    def share_of(self, record: KeyRecord) -> KeyShare | None:
        """Our share of `record`: the sum of the shares the qualified dealings gave us.
        Needs the run's dealings (call at the block that made it ready)."""
        dealings = self.keying.finished_dealings(record)
        if dealings is None:
            return None
        try:
            return _derive_share(
                self.keying.params.config(record.epoch), record, dealings, self.me, self._secret
            )
        except FairnessError:
            return None

    def recover_share(self, record: KeyRecord, dealings: Sequence[bytes]) -> KeyShare:
        """Our share of `record` from its qualified dealings as a peer sent them (we were
        restored by a snapshot taken after the run finished): see `recover_share`."""
        return recover_share(self.keying.params, record, self.me, self._secret, dealings)


def relay_label(config: DkgConfig, sender: int, message: bytes) -> bytes:
    """What a relayed DKG message's proof is bound to: the run (its session binds chain,
    epoch and members), the sender and the message."""
    return hash_bytes(_RELAY, config.session, u16(sender), message)


def relayed_entry(config: DkgConfig, sender: int, secret: int, message: bytes) -> bytes:
    """Member `sender`'s DKG message as any member's block may carry it (tag 0x09): its
    Schnorr proof of knowledge of the sender's DKG secret, bound to `relay_label`."""
    proof = prove_knowledge(secret, relay_label(config, sender, message))
    return dkg_relayed_entry(sender, proof, message)


def open_relayed(config: DkgConfig, entry: bytes) -> tuple[int, bytes] | None:
    """(sender, message) of a relayed entry of `config`'s run, or None when it is not one:
    too short, a sender out of range, or a proof that fails (another run's, another
    member's, a changed message)."""
    if entry[:1] != DKG_RELAYED_TAG or len(entry) <= RELAY_HEADER_BYTES:
        return None
    sender = int.from_bytes(entry[1:3], "big")
    if not 1 <= sender <= config.members:
        return None
    proof, message = entry[3:RELAY_HEADER_BYTES], entry[RELAY_HEADER_BYTES:]
    if not verify_knowledge(
        config.member_point(sender), proof, relay_label(config, sender, message)
    ):
        return None
    return sender, message


# Share recovery (docs/PROTOCOL.md §10.10): what a peer sent is judged against the
# replicated key record alone. These refusals are the sender's fault (it sent something
# that is not the run's qualified dealings); "unopened" and "wrong_share" are not
# provably so (a dealer may have spoiled our sealed share while we were away, or the
# peer changed a sealed share, which the transcript does not cover): ask another peer.
RECOVERY_PEER_FAULTS: Final = frozenset({"bad_count", "bad_dealing", "wrong_dealer", "forged"})


def recover_share(
    params: KeyingParams, record: KeyRecord, me: int, secret: int, dealings: Sequence[bytes]
) -> KeyShare:
    """Member `me`'s share of `record` from `dealings`, which claim to be the qualified
    dealings of its run in `record.qualified` order, or `FairnessError`. The dealings are
    authenticated without trusting their sender: each must be well formed and by the
    dealer at its place, and together their commitments must hash to the transcript the
    replicated record holds; the derived share must then match our verification key."""
    config = params.config(record.epoch)
    if len(dealings) != len(record.qualified):
        raise FairnessError(
            "bad_count", f"{len(dealings)} dealings, {len(record.qualified)} qualified dealers"
        )
    decoded = []
    for dealer, raw in zip(record.qualified, dealings, strict=True):
        try:
            dealing = decode_dealing(config, raw)
        except FairnessError as error:
            raise FairnessError("bad_dealing", f"dealer {dealer}: {error.message}") from None
        if dealing.dealer != dealer:
            raise FairnessError("wrong_dealer", f"dealer {dealing.dealer} in place of {dealer}")
        decoded.append(dealing)
    if transcript_of(config, record.key, decoded) != record.transcript:
        raise FairnessError("forged", "the dealings do not match the key record's transcript")
    return _derive_share(config, record, decoded, me, secret)


def _derive_share(
    config: DkgConfig, record: KeyRecord, dealings: Sequence[Dealing], me: int, secret: int
) -> KeyShare:
    """The sum of the shares `dealings` (the qualified ones) give member `me`, checked
    against its verification key in `record`."""
    total = 0
    for dealing in dealings:
        share = open_own_share(config, dealing, me, secret)
        if share is None:
            raise FairnessError(
                "unopened", f"dealer {dealing.dealer}'s share for member {me} does not open"
            )
        total += share
    x = total % N
    if not x or encode_point(base_mul(x)) != record.key.verification_shares[me - 1]:
        raise FairnessError("wrong_share", f"the shares do not give member {me}'s key")
    return KeyShare(me, x)
