"""The runtime simulator's Byzantine member: a real member's keys in hostile hands.

The actor holds member `me`'s identity key, so everything it sends arrives over an
authenticated link as that member's, and everything it signs verifies. Inside it runs
the member's own `Node` (the runtime, unmodified) behind `ActorLink`, so that it can
lend the committee its votes when it chooses (a quorum with one honest member down
needs them). Around that node it is hostile, in modes the simulator switches:

- `helpful`: the inner node's messages pass; junk continues at a low rate;
- `hostile`: the inner node's messages are dropped or mutated; junk at the full rate;
- `quiet`: nothing at all leaves (the inner node is stopped): the liveness phase.

Junk comes from a catalogue that covers every message kind (`c` with each consensus
type, `i`, `cps`, `sr`, `sp`, `ssr`, `ssi`, `ssg`, `ssd`):

- random msgpack values, and captured messages mutated (bit flips, truncation, type
  swaps, extreme integers -1, 2**62, 2**63, 2**64 - 1, -2**63 — 2**64 itself does not
  fit msgpack and never reaches the wire, deep nesting, oversized lists), at the outer
  layer and inside the consensus bytes;
- captured messages replayed verbatim;
- validly signed consensus messages: proposals for past, current, future and extreme
  rounds, with far or extreme heights and timestamps and bad, replayed or too many
  payload entries, equivocating pairs; votes and timeouts for any round; SyncInfo with
  the highest certificates it saw (which pulls a lagging member into syncing from it);
  block requests and responses;
- sync traffic: requests with extreme ranges, unsolicited replies, and answers to the
  honest members' own requests: an `sp` of forged blocks that extend the asker's real
  log but carry forged certificates (or junk records, or a real QC as a false proof),
  `ssi` claiming a far snapshot, `ssd` chunks of junk.

All choices come from the simulation's `random.Random`.
"""

from __future__ import annotations

import contextlib
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import trio

from consensus.crypto import Ed25519Signer
from consensus.types import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SyncInfo,
    TimeoutCert,
    TimeoutMsg,
    Vote,
    VoteData,
    block_signing_bytes,
    decode_message,
    encode_message,
    genesis_block,
    genesis_qc,
    timeout_signing_bytes,
)
from node.net.framing import pack
from node.payload import (
    TAG_DEPOSIT,
    TAG_INTENT,
    BadEntry,
    decode_committed,
    encode_committed,
    split_payload,
    with_signers,
)
from node.sim.simnet import SimEndpoint
from node.store.storage import MemoryStorage

EXTREME_INTS = (-1, -(2**63), 0, 1, 2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1)
UNENCODABLE_INTS = (2**64, -(2**63) - 1)  # msgpack refuses them: counted, never sent
LAG_ROUNDS = 8  # the runtime's default sync_gap_rounds
KINDS = ("c", "i", "cps", "sr", "sp", "ssr", "ssi", "ssg", "ssd")
ARITY = {"c": 2, "i": 2, "cps": 7, "sr": 3, "sp": 5, "ssr": 1, "ssi": 4, "ssg": 3, "ssd": 6}


class Mode:
    HELPFUL = "helpful"
    HOSTILE = "hostile"
    QUIET = "quiet"


@dataclass(slots=True)
class ActorStats:
    sent: dict[str, int] = field(default_factory=dict)  # by catalogue entry
    unencodable: int = 0
    inner_passed: int = 0
    inner_dropped: int = 0
    inner_mutated: int = 0
    forged_sync_replies: int = 0


@dataclass(frozen=True, slots=True)
class ActorPlan:
    tick_ms: tuple[int, int]  # time between bursts
    burst: int  # messages per burst, at most
    hostile_permille: int  # share of time slices in hostile mode
    slice_ms: int  # how long a mode lasts
    mutate_permille: int  # hostile: share of the inner node's messages mutated (else dropped)
    forge_sync_permille: int  # share of the honest members' sync requests answered forged
    far_rounds: bool  # sign votes and timeouts for far-future and extreme rounds too


class ByzantineActor:
    def __init__(
        self,
        me: int,
        n: int,
        identity_seed: bytes,
        chain_id: bytes,
        endpoint: SimEndpoint,
        rng: random.Random,
        plan: ActorPlan,
        now_ms: Callable[[], int],
        max_block_entries: int,
    ) -> None:
        self.me = me
        self.n = n
        self.signer = Ed25519Signer(identity_seed)
        self.chain_id = chain_id
        self.endpoint = endpoint
        self.rng = rng
        self.plan = plan
        self.now_ms = now_ms
        self.max_block_entries = max_block_entries
        self.mode = Mode.HELPFUL
        self.stats = ActorStats()
        # Who leads a round: the inner node's election once it exists (the same one the
        # honest members run), round-robin until then.
        self.leader_of: Callable[[int], int] = lambda round_: round_ % n
        self.inner_storage: MemoryStorage | None = None  # the inner node's, to forge from
        inner_send, self.inner_inbound = trio.open_memory_channel[tuple[int, Any]](1024)
        self._inner_send = inner_send
        genesis = genesis_block(chain_id)
        self._genesis = genesis
        self._captured: deque[Any] = deque(maxlen=64)
        self._consensus: deque[bytes] = deque(maxlen=64)
        self._qcs: OrderedDict[int, QuorumCert] = OrderedDict({0: genesis_qc(genesis)})
        self._tcs: OrderedDict[int, TimeoutCert] = OrderedDict()
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()
        self._intents: deque[bytes] = deque(maxlen=64)  # packed signed intents
        # payload entries of honest proposals, with the signer their signers entry names
        self._signed: deque[tuple[bytes, bytes]] = deque(maxlen=64)
        self._forged_for: set[tuple[int, int]] = set()  # (peer, from_height) answered
        self._max_round = 0
        self._catalogue: list[tuple[str, int, Callable[[], list[tuple[int | None, Any]]]]] = [
            ("random", 2, self._random_message),
            ("mutated", 3, self._mutated),
            ("mutated-consensus", 4, self._mutated_consensus),
            ("replayed", 1, self._replayed),
            ("proposal", 3, self._proposal),
            ("equivocation", 1, self._equivocation),
            ("vote", 2, self._vote),
            ("timeout", 2, self._timeout),
            ("sync-info", 1, self._sync_info),
            ("block-fetch", 1, self._block_fetch),
            ("sync-request", 1, self._sync_request),
            ("sync-reply", 2, self._unsolicited_reply),
            ("intents", 1, self._intents_junk),
            ("checkpoint-signature", 1, self._checkpoint_signature),
        ]
        self._weights = [w for _, w, _ in self._catalogue]

    # ------------------------------------------------------------ the inner node's link

    def link(self) -> ActorLink:
        return ActorLink(self)

    def outgoing(self, peer: int, message: Any) -> bool:
        """The inner node sends: pass, drop or mutate, by mode."""
        if self.mode == Mode.QUIET:
            return True
        if (
            isinstance(message, list)
            and message[:1] == ["sp"]
            and (peer, message[1]) in self._forged_for
        ):
            self._forged_for.discard((peer, message[1]))
            return True  # our forged answer went instead
        if self.mode == Mode.HOSTILE:
            if self.rng.randrange(1000) < self.plan.mutate_permille:
                self.stats.inner_mutated += 1
                self._send(peer, mutate(message, self.rng), "inner-mutated")
            else:
                self.stats.inner_dropped += 1
            return True
        self.stats.inner_passed += 1
        return self.endpoint.send(peer, message)

    # ------------------------------------------------------------ tasks

    async def pump(self) -> None:
        """Read what the honest members send: capture it, answer sync requests with
        forgeries, and hand it to the inner node."""
        async for peer, message in self.endpoint.inbound:
            self._capture(message)
            if self.mode != Mode.QUIET:
                self._react(peer, message)
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                self._inner_send.send_nowait((peer, message))

    async def attack(self) -> None:
        """Bursts of junk at random intervals, and mode changes per time slice."""
        next_slice = trio.current_time()
        lo, hi = self.plan.tick_ms
        while True:
            await trio.sleep(self.rng.randint(lo, hi) / 1000)
            if self.mode == Mode.QUIET:
                return
            if trio.current_time() >= next_slice:
                next_slice = trio.current_time() + self.plan.slice_ms / 1000
                hostile = self.rng.randrange(1000) < self.plan.hostile_permille
                self.mode = Mode.HOSTILE if hostile else Mode.HELPFUL
            burst = self.rng.randint(1, self.plan.burst)
            if self.mode == Mode.HELPFUL:
                burst = 1 if self.rng.random() < 0.5 else 0
            for _ in range(burst):
                self._one()

    def go_quiet(self) -> None:
        self.mode = Mode.QUIET

    # ------------------------------------------------------------ plumbing

    def _peers(self) -> list[int]:
        return [p for p in range(self.n) if p != self.me]

    def _one(self) -> None:
        (name, _, make) = self.rng.choices(self._catalogue, self._weights)[0]
        for to, message in make():
            self._send(to, message, name)

    def _send(self, to: int | None, message: Any, name: str) -> None:
        """`to` None: a random peer. Messages msgpack cannot encode are counted."""
        try:
            payload = message if isinstance(message, bytes | bytearray) else pack(message)
        except (OverflowError, ValueError, TypeError):
            self.stats.unencodable += 1
            return
        peer = self.rng.choice(self._peers()) if to is None else to
        self.stats.sent[name] = self.stats.sent.get(name, 0) + 1
        self.endpoint.net.send_raw(self.me, peer, bytes(payload))

    def _capture(self, message: Any) -> None:
        self._captured.append(message)
        if not isinstance(message, list) or not message:
            return
        kind = message[0]
        if kind == "c" and len(message) == 2 and isinstance(message[1], bytes):
            self._consensus.append(message[1])
            # Honest messages decode; a mutated copy of ours may not.
            with contextlib.suppress(Exception):
                self._learn(decode_message(message[1]))
        elif kind == "i" and len(message) == 2 and isinstance(message[1], list):
            self._intents.extend(x for x in message[1][:8] if isinstance(x, bytes))

    def _learn(self, msg: Message) -> None:
        qcs: list[QuorumCert] = []
        tcs: list[TimeoutCert] = []
        if isinstance(msg, Proposal):
            self._remember_block(msg.block)
            qcs.append(msg.block.qc)
            if msg.tc is not None:
                tcs.append(msg.tc)
            self._intents.extend(e[1:] for e in msg.block.payload[:8] if e[:1] == b"\x01")
            with contextlib.suppress(BadEntry):
                entries, signers = split_payload(msg.block.payload)
                self._signed.extend(list(zip(entries, signers, strict=True))[:8])
        elif isinstance(msg, TimeoutMsg):
            qcs.append(msg.high_qc)
            if msg.last_tc is not None:
                tcs.append(msg.last_tc)
            self._max_round = max(self._max_round, msg.round)
        elif isinstance(msg, SyncInfo):
            qcs.append(msg.high_qc)
            if msg.high_tc is not None:
                tcs.append(msg.high_tc)
        elif isinstance(msg, Vote):
            self._max_round = max(self._max_round, msg.vote_data.round)
        elif isinstance(msg, BlockResponse):
            for block in msg.blocks[:8]:
                self._remember_block(block)
        for qc in qcs:
            self._qcs[qc.round] = qc
            self._max_round = max(self._max_round, qc.round + 1)
            while len(self._qcs) > 32:
                self._qcs.popitem(last=False)
        for tc in tcs:
            self._tcs[tc.round] = tc
            while len(self._tcs) > 16:
                self._tcs.popitem(last=False)

    def _lags(self, message: list[Any]) -> bool:
        """Whether a consensus message shows its sender rounds behind the highest QC."""
        try:
            msg = decode_message(message[1])
        except Exception:
            return False
        if isinstance(msg, TimeoutMsg):
            behind = msg.high_qc.round
        elif isinstance(msg, Vote):
            behind = msg.vote_data.round
        else:
            return False
        return behind + LAG_ROUNDS < max(self._qcs)

    def _remember_block(self, block: Block) -> None:
        self._blocks[block.id] = block
        self._max_round = max(self._max_round, block.round)
        while len(self._blocks) > 32:
            self._blocks.popitem(last=False)

    def _react(self, peer: int, message: Any) -> None:
        if not isinstance(message, list) or not message:
            return
        kind = message[0]
        forge = self.rng.randrange(1000) < self.plan.forge_sync_permille
        if not forge:
            return
        if kind == "c" and self._lags(message):
            # A member far behind: our certificates make it sync, from us first.
            self._send(peer, self._sync_info()[0][1], "sync-info")
        if kind == "sr" and len(message) == 3 and type(message[1]) is int:
            self.stats.forged_sync_replies += 1
            self._forged_for.add((peer, message[1]))
            self._send(peer, self._forged_sync_reply(message[1]), "forged-sp")
        elif kind == "ssr":
            self._send(peer, self._forged_snapshot_info(), "forged-ssi")
        elif kind == "ssg" and len(message) == 3:
            height = message[1] if type(message[1]) is int else 1
            self._send(peer, self._forged_chunk(height), "forged-ssd")

    # ------------------------------------------------------------ values

    def _int(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return rng.choice(EXTREME_INTS)
        if roll < 0.55:
            return rng.choice(UNENCODABLE_INTS)
        return rng.randint(0, 1000)

    def _bytes(self, max_len: int = 80) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_len))

    def _qc(self) -> QuorumCert:
        return self.rng.choice(list(self._qcs.values()))

    def _high_qc(self) -> QuorumCert:
        return self._qcs[max(self._qcs)]

    def _round(self) -> int:
        """Past, current, near-future, and with `far_rounds` far-future or extreme."""
        rng = self.rng
        current = self._max_round
        near = (current, current + 1, max(0, current - rng.randint(1, 50)), 0)
        if not self.plan.far_rounds:
            return rng.choice(near)
        return rng.choice((*near, current + rng.randint(2, 150), current + 10**6, 2**62, 2**64 - 1))

    def _led_round(self, near: int) -> int:
        """A round this member leads at or above `near` (else `near` itself)."""
        for round_ in range(near, near + 4 * self.n):
            if self.leader_of(round_) == self.me:
                return round_
        return near

    # ------------------------------------------------------------ catalogue

    def _random_message(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:  # a known kind with random fields, sometimes the right arity
            kind = rng.choice(KINDS)
            arity = ARITY[kind] if rng.random() < 0.7 else rng.randint(1, 9)
            return [(None, [kind, *(random_value(rng, 3) for _ in range(arity - 1))])]
        if roll < 0.5:
            return [(None, rng.randbytes(rng.randint(0, 64)))]  # not msgpack of a list
        if roll < 0.6:  # deep nesting
            value: Any = rng.choice(KINDS)
            for _ in range(rng.randint(50, 400)):
                value = [value]
            return [(None, value)]
        return [(None, random_value(rng, 4))]

    def _mutated(self) -> list[tuple[int | None, Any]]:
        if not self._captured:
            return self._random_message()
        return [(None, mutate(self.rng.choice(self._captured), self.rng))]

    def _mutated_consensus(self) -> list[tuple[int | None, Any]]:
        if not self._consensus:
            return self._proposal()
        data = self.rng.choice(self._consensus)
        rng = self.rng
        if rng.random() < 0.2:
            return [(None, ["c", flip_bits(data, rng)])]
        if rng.random() < 0.1:
            return [(None, ["c", data[: rng.randrange(len(data) + 1)]])]
        inner = msgpack.unpackb(data, raw=False)
        try:
            packed = pack(mutate(inner, rng))
        except (OverflowError, ValueError, TypeError):
            self.stats.unencodable += 1
            return []
        return [(None, ["c", packed])]

    def _replayed(self) -> list[tuple[int | None, Any]]:
        if not self._captured:
            return self._random_message()
        return [(None, self.rng.choice(self._captured))]

    def _block(self, round_: int | None = None, qc: QuorumCert | None = None) -> Block:
        rng = self.rng
        qc = qc or self._qc()
        if round_ is None:
            if rng.random() < 0.6:
                round_ = self._led_round(qc.round + 1)
            else:
                round_ = self._led_round(self._round() % (2**63))
        parent = self._blocks.get(qc.block_id)
        height = (parent.height + 1) if parent is not None else rng.randint(1, 50)
        if rng.random() < 0.3:
            height = rng.choice((height + 10**6, 2**62, 2**63, 2**64 - 1, 0))
        timestamp = self.now_ms()
        if rng.random() < 0.2:
            timestamp = rng.choice((0, timestamp + 10**9, 2**64 - 1, timestamp - 10**7))
        draft = Block(round_, height, timestamp, self.me, qc, self._payload(), b"")
        signature = self.signer.sign(block_signing_bytes(self.chain_id, draft.id))
        return draft.with_signature(signature)

    def _payload(self) -> tuple[bytes, ...]:
        rng = self.rng
        roll = rng.random()
        real = list(self._intents)
        if roll < 0.3 or not real:
            return ()
        signed = list(self._signed)
        if roll < 0.4 and signed:  # real entries and signers, replayed (perhaps committed)
            picked = rng.sample(signed, min(len(signed), 4))
            return with_signers([e for e, _ in picked], [s for _, s in picked])
        if roll < 0.45 and signed:  # real entries, a lying signers entry
            picked = rng.sample(signed, min(len(signed), 4))
            return with_signers([e for e, _ in picked], [rng.randbytes(20) for _ in picked])
        if roll < 0.5:  # real intents with no signers entry
            return tuple(b"\x01" + x for x in rng.sample(real, min(len(real), 4)))
        if roll < 0.65:  # one bad signature among good ones
            good = [b"\x01" + x for x in real[:3]]
            return (*good, b"\x01" + flip_bits(rng.choice(real), rng))
        if roll < 0.75:  # undecodable entries, unknown tags, a deposit nobody saw
            return (
                bytes((TAG_INTENT,)) + self._bytes(),
                bytes((TAG_DEPOSIT,)) + self._bytes(),
                b"\x7f" + self._bytes(),
                b"",
            )
        if roll < 0.85:  # over the entry limit
            return tuple(b"\x01" + bytes([i % 256]) * 8 for i in range(self.max_block_entries + 1))
        return (b"\x01" + rng.randbytes(60_000),)  # large entries

    def _proposal(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        qc = self._qc()
        round_ = None
        tc = None
        if self._tcs and rng.random() < 0.3:
            tc = rng.choice(list(self._tcs.values()))
            round_ = tc.round + 1
        block = self._block(round_, qc)
        message = ["c", encode_message(Proposal(block, tc))]
        if rng.random() < 0.5:
            return [(p, message) for p in self._peers()]
        return [(None, message)]

    def _equivocation(self) -> list[tuple[int | None, Any]]:
        """Two blocks for one round this member leads, one to each half."""
        qc = self._high_qc()
        round_ = self._led_round(qc.round + 1)
        first, second = self._block(round_, qc), self._block(round_, qc)
        peers = self._peers()
        self.rng.shuffle(peers)
        half = len(peers) // 2
        out: list[tuple[int | None, Any]] = []
        for i, peer in enumerate(peers):
            block = first if i < half else second
            out.append((peer, ["c", encode_message(Proposal(block, None))]))
        return out

    def _vote(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        if self._blocks and rng.random() < 0.5:
            block = rng.choice(list(self._blocks.values()))
            data = block.vote_data()
            if rng.random() < 0.5:  # same round, another block: a double vote
                data = VoteData(rng.randbytes(32), data.round, data.parent_id, data.parent_round)
        else:
            round_ = max(1, self._round())
            data = VoteData(rng.randbytes(32), round_, rng.randbytes(32), round_ - 1)
        signature = self.signer.sign(data.signing_bytes(self.chain_id))
        vote = Vote(data, self.me, signature)
        to = self._led_peer(data.round + 1)
        return [(to, ["c", encode_message(vote)])]

    def _led_peer(self, round_: int) -> int | None:
        leader = self.leader_of(round_)
        return None if leader == self.me else leader

    def _timeout(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        qc = self._qc()
        round_ = max(qc.round, self._round())
        hqc_round = qc.round if rng.random() < 0.8 else self._int() % (2**64)
        signature = self.signer.sign(timeout_signing_bytes(self.chain_id, round_, hqc_round))
        last_tc = rng.choice(list(self._tcs.values())) if self._tcs and rng.random() < 0.5 else None
        message = ["c", encode_message(TimeoutMsg(round_, qc, self.me, signature, last_tc))]
        return [(p, message) for p in self._peers()]

    def _sync_info(self) -> list[tuple[int | None, Any]]:
        """The highest certificates seen: a member far behind starts syncing from us."""
        tc = self._tcs[max(self._tcs)] if self._tcs else None
        message = ["c", encode_message(SyncInfo(self._high_qc(), tc))]
        return [(p, message) for p in self._peers()]

    def _block_fetch(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        if rng.random() < 0.5:
            block_id = rng.choice([*self._blocks, rng.randbytes(32)])
            message = BlockRequest(block_id, rng.randint(1, 256))
            return [(None, ["c", encode_message(message)])]
        blocks = [self._block() for _ in range(rng.randint(1, 3))]
        if self._blocks and rng.random() < 0.5:
            blocks.append(rng.choice(list(self._blocks.values())))
        return [(None, ["c", encode_message(BlockResponse(tuple(blocks)))])]

    def _sync_request(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return [(None, ["sr", self._int(), self._int()])]
        if roll < 0.7:
            return [(None, ["sr", rng.randint(1, 100), rng.randint(1, 256)])]
        if roll < 0.8:
            return [(None, ["ssr"])]
        return [(None, ["ssg", self._int(), self._int()])]

    def _unsolicited_reply(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return [(None, self._forged_sync_reply(rng.randint(1, 60)))]
        if roll < 0.75:
            return [(None, self._forged_snapshot_info())]
        return [(None, self._forged_chunk(rng.randint(1, 60)))]

    def _intents_junk(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        real = list(self._intents)
        roll = rng.random()
        if real and roll < 0.5:  # tampered copies first: would they censor the real one?
            return [(p, ["i", [flip_bits(x, rng) for x in real[:8]]]) for p in self._peers()]
        if roll < 0.7:
            return [(None, ["i", [self._bytes(1200) for _ in range(rng.randint(0, 20))]])]
        if roll < 0.8:
            return [(None, ["i", [b"x"] * 600])]  # over the count limit
        return [(None, ["i", random_value(rng, 3)])]

    def _checkpoint_signature(self) -> list[tuple[int | None, Any]]:
        rng = self.rng
        fields = [self._int(), self._int(), self._bytes(40), self._bytes(40), self._int()]
        return [(None, ["cps", *fields, rng.randbytes(65)])]

    # ------------------------------------------------------------ forged sync answers

    def _forged_sync_reply(self, from_height: int) -> list[Any]:
        """Blocks that extend the asker's real log (read from our inner node's log,
        which is the committee's) but carry forged certificates; or junk."""
        rng = self.rng
        if not 1 <= from_height <= 2**62:
            return ["sp", from_height, [self._bytes()], None, self._int()]
        roll = rng.random()
        if roll < 0.15:
            return ["sp", from_height, [self._bytes(200) for _ in range(3)], None, from_height + 5]
        if roll < 0.25:
            return ["sp", from_height, [], None, self._int()]
        parent = self._parent_at(from_height - 1)
        records: list[bytes] = []
        for i in range(rng.randint(1, 6)):
            fake_qc = QuorumCert(
                parent.vote_data(), tuple(range(3)), tuple(rng.randbytes(64) for _ in range(3))
            )
            draft = Block(
                parent.round + 1, from_height + i, self.now_ms(), self.me, fake_qc, (), b""
            )
            block = draft.with_signature(
                self.signer.sign(block_signing_bytes(self.chain_id, draft.id))
            )
            records.append(encode_committed(block))
            parent = block
        proof: Any = None
        roll = rng.random()
        if roll < 0.4:  # a "proof" that certifies a child of our last block, forged
            child = VoteData(rng.randbytes(32), parent.round + 1, parent.id, parent.round)
            proof = QuorumCert(child, (0, 1, 2), tuple(rng.randbytes(64) for _ in range(3)))
            proof = proof.to_wire()
        elif roll < 0.7:  # a real QC, for something else
            proof = self._high_qc().to_wire()
        root = from_height + len(records) - 1 + rng.choice((0, 0, 5, 10**6))
        return ["sp", from_height, records, proof, root]

    def _parent_at(self, height: int) -> Block:
        if height <= 0 or self.inner_storage is None:
            return self._genesis
        rows = self.inner_storage.load_committed(height, 1)
        if not rows or rows[0][0] != height:
            return self._genesis
        return decode_committed(rows[0][1])

    def _forged_snapshot_info(self) -> list[Any]:
        rng = self.rng
        height = rng.choice((rng.randint(1, 10**4), 2**62, 0))
        if height == 0:
            return ["ssi", 0, b"", b""]
        return ["ssi", height, rng.randbytes(32), rng.randbytes(32)]

    def _forged_chunk(self, height: int) -> list[Any]:
        rng = self.rng
        total = rng.randint(1, 1 << 20)
        chunk = rng.randbytes(min(total, rng.randint(0, 4096)))
        return ["ssd", height, 0, chunk, total, self._bytes(200)]


class ActorLink:
    """The inner node's `PeerNetwork`: inbound from the actor's pump, outbound through
    the actor's mode filter."""

    def __init__(self, actor: ByzantineActor) -> None:
        self._actor = actor
        self.inbound = actor.inner_inbound

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def send(self, peer_id: int, message: Any) -> bool:
        return self._actor.outgoing(peer_id, message)

    def broadcast(self, message: Any) -> None:
        for peer in self._actor._peers():
            self._actor.outgoing(peer, message)

    def connected_peers(self) -> frozenset[int]:
        return self._actor.endpoint.connected_peers()

    def penalize(self, peer_id: int, reason: str) -> None:
        pass  # the actor keeps talking to everyone


# ---------------------------------------------------------------- mutation


def random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.25:
        return rng.choice(EXTREME_INTS) if rng.random() < 0.5 else rng.randint(-5, 300)
    if roll < 0.45:
        return rng.randbytes(rng.choice((0, 1, 20, 32, 64, 65, 200)))
    if roll < 0.55:
        return rng.choice(("", "c", "sp", "x" * 300, "\u00e9"))
    if roll < 0.6:
        return rng.choice((None, True, False, 1.5, float("nan"), -0.0))
    if roll < 0.85:
        return [random_value(rng, depth - 1) for _ in range(rng.randint(0, 6))]
    return {random_value(rng, 0): random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))}


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x00"
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def mutate(message: Any, rng: random.Random) -> Any:
    """One structural mutation at a random place in a copy of `message`."""
    copy = _copy(message)
    slots: list[tuple[Any, Any]] = []  # (container, key)
    _collect(copy, slots, 400)
    if not slots:
        return _mutate_value(copy, rng)
    container, key = rng.choice(slots)
    container[key] = _mutate_value(container[key], rng)
    return copy


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _collect(value: Any, slots: list[tuple[Any, Any]], limit: int) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            if len(slots) >= limit:
                return
            slots.append((value, i))
            _collect(item, slots, limit)
    elif isinstance(value, dict):
        for k in list(value):
            if len(slots) >= limit:
                return
            slots.append((value, k))
            _collect(value[k], slots, limit)


def _mutate_value(value: Any, rng: random.Random) -> Any:
    op = rng.randrange(8)
    if op == 0 and isinstance(value, bytes):
        return flip_bits(value, rng)
    if op == 1 and isinstance(value, bytes | list | str):
        return value[: rng.randrange(len(value) + 1)] if value else value
    if op == 2:  # type swap
        return rng.choice((0, -1, b"", "", None, [], {}, True, 1.0, [value], {0: value}))
    if op == 3 or isinstance(value, int):
        return rng.choice(EXTREME_INTS + UNENCODABLE_INTS)
    if op == 4:  # deep nesting
        for _ in range(rng.randint(100, 500)):
            value = [value]
        return value
    if op == 5:  # oversized lists (of small items: the frame limit is 4 MiB)
        return rng.choice(([value] * 257, [0] * 70_000, [b""] * 1025))
    if op == 6 and isinstance(value, bytes):
        return value + rng.randbytes(rng.choice((1, 64, 70_000)))
    return random_value(rng, 2)
