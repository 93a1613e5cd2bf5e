"""Trader signatures at the boundary: every payload entry and every submitted intent is
recovered once per member, and the answer is remembered by the entry's bytes (which
cover both the digest and the signature).

Good entries wait in a byte-bounded cache until their block executes (the engine's
input); bad ones are remembered too, so a replayed bad payload costs no recovery. A
committed block never needs a recovery: its signers entry, checked by 2f + 1 voters
before the QC, names them (node/payload.py).
coincurve releases the GIL around each recovery, so big batches are split over worker
threads (`threads`, 0 or 1 for none: the simulator needs none, for determinism).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from node.fairness.envelope import MAX_ENVELOPE_BYTES, Envelope, decode_envelope, verify_envelope
from node.fairness.errors import FairnessError
from node.fairness.group import Point
from node.intents import (
    MAX_INTENT_MSGPACK_BYTES,
    Domain,
    Entry,
    IntentError,
    SignedIntent,
    verify_intent,
)
from node.listing import LISTING_TAG
from node.oracle.observation import OBSERVATION_TAGS
from node.payload import (
    NO_SIGNER,
    TAG_DEPOSIT,
    TAG_DKG,
    TAG_DKG_RELAYED,
    TAG_ENVELOPE,
    BadEntry,
    decode_entry,
    split_payload,
)
from node.runtime.caches import ByteLRU

MAX_ENTRY_BYTES = 1 + MAX_INTENT_MSGPACK_BYTES  # a payload entry: tag byte + packed intent
THREAD_BATCH_MIN = 64  # below this many recoveries, a thread hand-off costs more than it saves
DEPOSIT_TAG = bytes((TAG_DEPOSIT,))
# Entries no trader signed (their signer is NO_SIGNER): deposits, checked against our
# own chain watcher, price and vol observations, checked by node/oracle/, DKG
# entries, whose size and count the member checks (node/fairness/keying.py judges
# their content at execution, deterministically), and listings, signed by the members
# (node/listing.py).
COMMITTEE_TAGS = (
    DEPOSIT_TAG,
    *OBSERVATION_TAGS,
    bytes((TAG_DKG,)),
    bytes((TAG_DKG_RELAYED,)),
    LISTING_TAG,
)
ENVELOPE_TAG = bytes((TAG_ENVELOPE,))
MAX_ENVELOPE_ENTRY_BYTES = 1 + MAX_ENVELOPE_BYTES


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """An encrypted intent (payload tag 0x05) whose signature recovered `signer` and
    whose KEM proof holds: what intake admits and a replica votes for. Its content is
    unknown until its block commits (docs/PROTOCOL.md §10)."""

    envelope: Envelope
    signer: bytes
    envelope_id: bytes
    r_point: Point


def check_envelope_entry(raw: bytes, domain: Domain) -> VerifiedEnvelope:
    """Decode and verify a 0x05 entry; FairnessError with the §10.3 code if it fails."""
    if raw[:1] != ENVELOPE_TAG:
        raise FairnessError("bad_tag", "not an envelope entry")
    envelope = decode_envelope(raw[1:])
    signer, r_point = verify_envelope(envelope, domain)
    return VerifiedEnvelope(envelope, signer, envelope.digest(domain), r_point)


class EntryVerifier:
    def __init__(
        self,
        domain: Domain,
        threads: int,
        verified_bytes: int,
        bad_bytes: int,
        accept_envelopes: bool = False,
    ) -> None:
        self.domain = domain
        # Encrypted intents (0x05): only when genesis publishes a committee key.
        self.accept_envelopes = accept_envelopes
        self.envelopes: ByteLRU[bytes, VerifiedEnvelope] = ByteLRU(verified_bytes // 4)
        self.threads = threads
        # packed payload entry -> verified entry (the engine's input)
        self.verified: ByteLRU[bytes, Entry] = ByteLRU(verified_bytes)
        # packed payload entry -> why it failed
        self.bad: ByteLRU[bytes, str] = ByteLRU(bad_bytes)

    def known(self, raw: bytes) -> Entry | None:
        return self.verified.get(raw)

    def remember(self, raw: bytes, entry: Entry) -> None:
        self.verified.put(raw, entry, len(raw))

    def forget(self, raw: bytes) -> None:
        self.verified.pop(raw)
        if raw[:1] == ENVELOPE_TAG:
            self.envelopes.pop(raw)

    def envelope(self, raw: bytes) -> VerifiedEnvelope:
        """A 0x05 entry verified (from the cache when seen); FairnessError if bad."""
        known = self.envelopes.get(raw)
        if known is not None:
            return known
        checked = check_envelope_entry(raw, self.domain)
        self.envelopes.put(raw, checked, len(raw))
        return checked

    def intent_id(self, raw: bytes) -> bytes:
        """The id of a payload entry (its raw bytes if it does not decode)."""
        entry = self.verified.get(raw)
        if entry is not None:
            return entry.intent_id
        if raw[:1] == ENVELOPE_TAG:
            known = self.envelopes.get(raw)
            if known is not None:
                return known.envelope_id
            try:
                return decode_envelope(raw[1:]).digest(self.domain)
            except FairnessError:
                return raw
        try:
            return decode_entry(raw).digest(self.domain)
        except BadEntry:
            return raw

    async def check_payload(self, payload: tuple[bytes, ...]) -> str | None:
        """Every intent entry decodes and carries a valid trader signature, and the
        payload's signers entry names the signer each entry recovers to (node/payload.py):
        None when so, else why not. Deposit and observation entries are checked by the
        caller."""
        try:
            entries, signers = split_payload(payload)
        except BadEntry as exc:
            return str(exc)
        todo: list[bytes] = []
        sealed: dict[bytes, bytes] = {}  # envelope entry -> its signer
        for e in entries:
            if e[:1] in COMMITTEE_TAGS or e in self.verified:
                continue
            if e[:1] == ENVELOPE_TAG:
                bad_envelope = self._check_envelope(e, sealed)
                if bad_envelope is not None:
                    return bad_envelope
                continue
            if len(e) > MAX_ENTRY_BYTES:
                return f"entry of {len(e)} bytes (at most {MAX_ENTRY_BYTES})"
            known_bad = self.bad.get(e)
            if known_bad is not None:
                return known_bad
            todo.append(e)
        decoded: list[tuple[bytes, SignedIntent]] = []
        for e in todo:
            try:
                decoded.append((e, decode_entry(e)))
            except BadEntry as exc:
                return self._remember_bad(e, f"undecodable entry: {exc}")
        results = await self.verify([si for _, si in decoded])
        fresh: dict[bytes, Entry] = {}
        bad: str | None = None
        for (raw, _), result in zip(decoded, results, strict=True):
            if isinstance(result, IntentError):
                bad = bad or self._remember_bad(raw, f"{result.code}: {result.message}")
            else:
                self.remember(raw, result)
                fresh[raw] = result
        if bad is not None:
            return bad
        for i, (e, signer) in enumerate(zip(entries, signers, strict=True)):
            if e[:1] in COMMITTEE_TAGS:
                recovered = NO_SIGNER
            elif e in sealed:
                recovered = sealed[e]
            else:
                entry = fresh.get(e) or self.verified.get(e)
                if entry is None:  # evicted by a later entry of this very payload
                    return "payload larger than the verified-entry cache"
                recovered = entry.signer
            if signer != recovered:
                return f"signers entry names 0x{signer.hex()} for entry {i}, not its signer"
        return None

    def _check_envelope(self, raw: bytes, sealed: dict[bytes, bytes]) -> str | None:
        """Why a 0x05 entry is not one an honest leader proposes (None: it is); its
        signer goes into `sealed`."""
        if not self.accept_envelopes:
            return "an encrypted intent, but genesis publishes no committee key"
        if len(raw) > MAX_ENVELOPE_ENTRY_BYTES:
            return f"envelope entry of {len(raw)} bytes (at most {MAX_ENVELOPE_ENTRY_BYTES})"
        known_bad = self.bad.get(raw)
        if known_bad is not None:
            return known_bad
        try:
            sealed[raw] = self.envelope(raw).signer
        except FairnessError as error:
            return self._remember_bad(raw, f"bad envelope: {error.code}: {error.message}")
        return None

    def _remember_bad(self, raw: bytes, why: str) -> str:
        self.bad.put(raw, why, len(raw))
        return why

    async def verify(
        self, intents: list[SignedIntent], digests: list[bytes] | None = None
    ) -> list[Entry | IntentError]:
        """Recover every signer; `digests` (the intent ids) when already computed."""
        domain = self.domain
        known: list[bytes | None] = list(digests) if digests else [None] * len(intents)
        pairs = list(zip(intents, known, strict=True))

        def verify_all(batch: list[tuple[SignedIntent, bytes | None]]) -> list[Entry | IntentError]:
            out: list[Entry | IntentError] = []
            for si, digest in batch:
                try:
                    out.append(verify_intent(si, domain, digest=digest))
                except IntentError as exc:
                    out.append(exc)
            return out

        threads = self.threads
        if threads < 2 or len(pairs) < THREAD_BATCH_MIN:
            return verify_all(pairs)
        step = -(-len(pairs) // threads)
        parts = [pairs[i : i + step] for i in range(0, len(pairs), step)]
        results: list[list[Entry | IntentError]] = [[] for _ in parts]

        async def part(i: int) -> None:
            results[i] = await trio.to_thread.run_sync(verify_all, parts[i])

        async with trio.open_nursery() as nursery:
            for i in range(len(parts)):
                nursery.start_soon(part, i)
        return [r for chunk in results for r in chunk]
