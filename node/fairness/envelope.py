"""The encrypted-intent envelope (docs/PROTOCOL.md §10): bytes, signature, opening.

A trader seals a §4 signed intent to the committee's threshold key and signs the
envelope with the same Ethereum key (EIP-712, §4.2's domain), so a node can check the
signer, rate-limit it and refuse spam without reading the content. After the envelope
commits, the committee's decryption shares give the AEAD key; the plaintext is the
signed intent, padded. Everything that can go wrong after commit is a deterministic
rejection (`Rejected`), the same at every member, never an exception.

Layout (offsets in bytes):

    0    1   version (1)
    1    8   chain id (u64)
    9    8   epoch (u64): the committee key's epoch
    17   20  account
    37   8   nonce (u64): the inner intent's nonce
    45   33  KEM point R
    78   64  KEM proof of knowledge of r, bound to bytes 0 … 44 (the label)
    142  24  AEAD nonce
    166  L   XChaCha20-Poly1305 ciphertext, associated data bytes 0 … 165;
             L = 16 + 256·k for k in 1 … 5
    166+L 65 signature r ‖ s ‖ v over EIP-712 EncryptedIntent(bytes32 hash),
             hash = keccak(bytes 0 … 165+L)

Plaintext: the packed intent's length (u16) ‖ the packed intent (§4.5 msgpack,
1 … 1024 bytes) ‖ zero bytes up to a multiple of 256, so the size shows only a bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import coincurve
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from node.fairness.errors import FairnessError
from node.fairness.group import Point, hash_bytes, u64
from node.fairness.threshold import KEM_BYTES, ThresholdPublicKey, encapsulate, open_ciphertext
from node.intents import (
    MAX_INTENT_MSGPACK_BYTES,
    Domain,
    IntentError,
    SignedIntent,
    keccak256,
    pack_intent,
    recover_signer,
    unpack_intent,
)

VERSION: Final = 1
LABEL_BYTES: Final = 45
AEAD_NONCE_BYTES: Final = 24
TAG_BYTES: Final = 16
HEADER_BYTES: Final = LABEL_BYTES + KEM_BYTES + AEAD_NONCE_BYTES  # 166
SIGNATURE_BYTES: Final = 65
PAD_BYTES: Final = 256
MAX_PLAINTEXT_BYTES: Final = 1280  # 2 + 1024 rounded up to a multiple of 256
MIN_ENVELOPE_BYTES: Final = HEADER_BYTES + PAD_BYTES + TAG_BYTES + SIGNATURE_BYTES  # 503
MAX_ENVELOPE_BYTES: Final = HEADER_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES + SIGNATURE_BYTES  # 1527
ENVELOPE_TYPE: Final = "EncryptedIntent(bytes32 hash)"
_ENVELOPE_TYPEHASH: Final = keccak256(ENVELOPE_TYPE.encode())
_AEAD_NONCE: Final = b"seqnet/fairness/envelope-nonce/v1"
_KEM_SEED: Final = b"seqnet/fairness/envelope-kem-seed/v1"
_U64_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope: sizes and ranges checked, signature and proof not yet."""

    chain_id: int
    epoch: int
    account: bytes
    nonce: int
    kem: bytes
    aead_nonce: bytes
    ciphertext: bytes
    signature: bytes
    raw: bytes

    @property
    def label(self) -> bytes:
        """Bytes 0 … 44: what the KEM proof is bound to."""
        return self.raw[:LABEL_BYTES]

    @property
    def header(self) -> bytes:
        """Bytes 0 … 165: the AEAD's associated data."""
        return self.raw[:HEADER_BYTES]

    def digest(self, domain: Domain) -> bytes:
        """The EIP-712 digest the trader signed; also the envelope's id."""
        return envelope_digest(self.raw[:-SIGNATURE_BYTES], domain)


def envelope_digest(unsigned: bytes, domain: Domain) -> bytes:
    struct = keccak256(_ENVELOPE_TYPEHASH + keccak256(unsigned))
    return keccak256(b"\x19\x01" + domain.separator + struct)


def decode_envelope(data: bytes) -> Envelope:
    """Strict decoding: every size, the version and the ciphertext's bucket."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise FairnessError("too_large", f"an envelope is at most {MAX_ENVELOPE_BYTES} bytes")
    if len(data) < MIN_ENVELOPE_BYTES:
        raise FairnessError("too_small", f"an envelope is at least {MIN_ENVELOPE_BYTES} bytes")
    if data[0] != VERSION:
        raise FairnessError("bad_version", f"envelope version {data[0]}, expected {VERSION}")
    ciphertext = data[HEADER_BYTES:-SIGNATURE_BYTES]
    if (len(ciphertext) - TAG_BYTES) % PAD_BYTES:
        raise FairnessError("bad_length", f"the ciphertext is 16 + a multiple of {PAD_BYTES} bytes")
    chain_id = int.from_bytes(data[1:9], "big")
    if chain_id == 0:
        raise FairnessError("out_of_range", "chain id 0")
    return Envelope(
        chain_id=chain_id,
        epoch=int.from_bytes(data[9:17], "big"),
        account=data[17:37],
        nonce=int.from_bytes(data[37:45], "big"),
        kem=data[45:142],
        aead_nonce=data[142:HEADER_BYTES],
        ciphertext=ciphertext,
        signature=data[-SIGNATURE_BYTES:],
        raw=data,
    )


def verify_envelope(envelope: Envelope, domain: Domain) -> tuple[bytes, Point]:
    """(signer, R): the signature recovers a signer and the KEM proof holds.

    What intake checks before an envelope takes a mempool slot; whether the signer is
    the account or one of its agents, and the nonce window, are the node's checks (§4.3)."""
    if envelope.chain_id != domain.chain_id:
        raise FairnessError("wrong_chain", f"envelope for chain {envelope.chain_id}")
    try:
        signer = recover_signer(envelope.digest(domain), envelope.signature)
    except IntentError as error:
        raise FairnessError(error.code, error.message) from None
    return signer, open_ciphertext(envelope.kem, envelope.label)


def pad(packed_intent: bytes) -> bytes:
    if not 1 <= len(packed_intent) <= MAX_INTENT_MSGPACK_BYTES:
        raise FairnessError("too_large", f"a packed intent is 1 … {MAX_INTENT_MSGPACK_BYTES} bytes")
    body = len(packed_intent).to_bytes(2, "big") + packed_intent
    return body + bytes(-len(body) % PAD_BYTES)


def seal(
    intent: SignedIntent,
    public: ThresholdPublicKey,
    epoch: int,
    domain: Domain,
    private_key: bytes | coincurve.PrivateKey,
    seed: bytes,
) -> bytes:
    """The signed envelope for `intent`. `private_key` signs the envelope (the account's
    key or an agent's, as for the intent); `seed` is 32 fresh random bytes (the same seed
    gives the same bytes: test vectors)."""
    if len(seed) != 32:
        raise FairnessError("bad_seed", "the envelope seed is 32 random bytes")
    if not 0 <= epoch <= _U64_MAX:
        raise FairnessError("out_of_range", "epoch is u64")
    label = (
        bytes([VERSION]) + u64(domain.chain_id) + u64(epoch) + intent.account + u64(intent.nonce)
    )
    kem, key = encapsulate(public, label, hash_bytes(_KEM_SEED, seed))
    aead_nonce = hash_bytes(_AEAD_NONCE, seed)[:AEAD_NONCE_BYTES]
    header = label + kem + aead_nonce
    ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(
        pad(pack_intent(intent)), header, aead_nonce, key
    )
    unsigned = header + ciphertext
    signer = (
        private_key
        if isinstance(private_key, coincurve.PrivateKey)
        else coincurve.PrivateKey(private_key)
    )
    raw = signer.sign_recoverable(envelope_digest(unsigned, domain), hasher=None)
    return unsigned + raw[:64] + bytes([27 + raw[64]])


# ---------------------------------------------------------------------------------------
# Opening after commit: deterministic outcomes


@dataclass(frozen=True, slots=True)
class Rejected:
    """An envelope that committed but does not yield an executable intent."""

    code: str  # undecryptable | bad_padding | bad_inner_intent | envelope_mismatch
    detail: str


def open_envelope(envelope: Envelope, key: bytes) -> SignedIntent | Rejected:
    """The inner signed intent, given the combined key (`threshold.combine`).

    The intent's own signature is checked next, by the §4 path, as for any intent."""
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            envelope.ciphertext, envelope.header, envelope.aead_nonce, key
        )
    except CryptoError:
        return Rejected("undecryptable", "the ciphertext does not open under the committee key")
    length = int.from_bytes(plain[:2], "big")
    if not 1 <= length <= MAX_INTENT_MSGPACK_BYTES or len(plain) - 2 - length >= PAD_BYTES:
        return Rejected("bad_padding", f"inner length {length} does not fit the padded body")
    if any(plain[2 + length :]):
        return Rejected("bad_padding", "padding bytes are not zero")
    try:
        intent = unpack_intent(plain[2 : 2 + length])
    except IntentError as error:
        return Rejected("bad_inner_intent", f"{error.code}: {error.message}")
    if intent.account != envelope.account or intent.nonce != envelope.nonce:
        return Rejected("envelope_mismatch", "the inner intent's account or nonce differs")
    return intent
