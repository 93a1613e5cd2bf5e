"""The encrypted-intent envelope: layout, signature, strict decoding, opening."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import re

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from node.fairness.envelope import (
    HEADER_BYTES,
    MAX_ENVELOPE_BYTES,
    MIN_ENVELOPE_BYTES,
    SIGNATURE_BYTES,
    Envelope,
    Rejected,
    decode_envelope,
    envelope_digest,
    open_envelope,
    pad,
    seal,
    verify_envelope,
)
from node.fairness.errors import FairnessError
from node.fairness.threshold import DEV_CHAIN_ID, combine, create_share, dealer_keygen
from node.intents import Domain, address_of_private_key, keccak256, pack_intent, sign_intent
from seqnet_sdk.encrypted import encrypt_action, parse_committee_key
from tests.fairness import vectors
from tests.fairness.vectors import ACCOUNT, DOMAIN, PRIVATE_KEY, inner_intent

PUBLIC, SHARES = dealer_keygen(4, 2, vectors.DEALER_SEED, chain_id=DEV_CHAIN_ID)
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def _key(envelope: Envelope) -> bytes:
    _, r_point = verify_envelope(envelope, DOMAIN)
    return combine(PUBLIC, r_point, [create_share(s, PUBLIC, r_point) for s in SHARES[1:3]]).key


def _sealed(seed: bytes = b"\x33" * 32) -> bytes:
    return seal(inner_intent(), PUBLIC, 1, DOMAIN, PRIVATE_KEY, seed)


def test_round_trip_through_the_committee() -> None:
    envelope = decode_envelope(_sealed())
    signer, _ = verify_envelope(envelope, DOMAIN)
    assert signer == ACCOUNT
    assert (envelope.account, envelope.nonce, envelope.epoch) == (ACCOUNT, vectors.NONCE, 1)
    assert open_envelope(envelope, _key(envelope)) == inner_intent()


def test_sdk_encrypts_and_signs() -> None:
    key = parse_committee_key("0x" + PUBLIC.encode().hex())
    raw = encrypt_action(PRIVATE_KEY, ACCOUNT, 5, vectors.ACTION, DOMAIN, key, 3)
    other = encrypt_action(PRIVATE_KEY, ACCOUNT, 5, vectors.ACTION, DOMAIN, key, 3)
    assert raw != other  # fresh randomness each time
    envelope = decode_envelope(raw)
    assert verify_envelope(envelope, DOMAIN)[0] == ACCOUNT
    opened = open_envelope(envelope, _key(envelope))
    assert not isinstance(opened, Rejected) and opened.nonce == 5


def test_an_agent_signs_the_envelope_too() -> None:
    agent_key = bytes(31) + b"\x02"
    intent = sign_intent(agent_key, ACCOUNT, 9, vectors.ACTION, DOMAIN)
    envelope = decode_envelope(seal(intent, PUBLIC, 1, DOMAIN, agent_key, b"\x44" * 32))
    signer, _ = verify_envelope(envelope, DOMAIN)
    assert signer.hex() == "2b5ad5c4795c026514f8317c7a215e218dccd6cf"
    assert envelope.account == ACCOUNT


def test_pinned_vectors_match_the_protocol_document() -> None:
    text = DOCS.read_text()
    block = re.search(
        r"<!-- fairness-vectors:begin -->\s*```json\n(.*?)```\s*<!-- fairness-vectors:end -->",
        text,
        re.S,
    )
    assert block is not None, "PROTOCOL.md §10 test vectors are missing"
    assert json.loads(block.group(1)) == vectors.compute()


def test_inner_intent_is_the_plain_protocol_vector() -> None:
    # The sealed intent is §4.6's place_limit vector, byte for byte.
    assert inner_intent().signature.hex().startswith("8c1681a0654315fa")


def test_sizes_and_version_are_strict() -> None:
    raw = _sealed()
    assert len(raw) == MIN_ENVELOPE_BYTES
    for data, code in [
        (raw[:-1], "too_small"),
        (raw + bytes(MAX_ENVELOPE_BYTES), "too_large"),
        (b"\x02" + raw[1:], "bad_version"),
        (raw[:-65] + bytes(1) + raw[-65:], "bad_length"),
        (raw[:1] + bytes(8) + raw[9:], "out_of_range"),
    ]:
        with pytest.raises(FairnessError) as error:
            decode_envelope(data)
        assert error.value.code == code


def test_padding_hides_the_size_within_a_bucket() -> None:
    assert len(pad(b"x")) == len(pad(b"x" * 254)) == 256
    assert len(pad(b"x" * 255)) == 512
    assert len(pad(b"x" * 1024)) == 1280
    with pytest.raises(FairnessError):
        pad(b"x" * 1025)


def test_wrong_chain_is_refused() -> None:
    envelope = decode_envelope(_sealed())
    with pytest.raises(FairnessError) as error:
        verify_envelope(envelope, Domain(1, DOMAIN.verifying_contract))
    assert error.value.code == "wrong_chain"


def test_tampering_changes_the_signer_or_breaks_the_proof() -> None:
    raw = _sealed()
    for position in (10, 20, 40, 50, 100, 150, HEADER_BYTES + 5):
        damaged = bytearray(raw)
        damaged[position] ^= 1
        envelope = decode_envelope(bytes(damaged))
        try:
            signer, _ = verify_envelope(envelope, DOMAIN)
        except FairnessError:
            continue
        assert signer != ACCOUNT, position  # someone else's envelope: intake refuses it


def test_a_copied_kem_ciphertext_does_not_verify_for_another_account() -> None:
    # An attacker copies the victim's R and proof into an envelope of its own, hoping the
    # committee decrypts it first: the proof is bound to the victim's header.
    victim = decode_envelope(_sealed())
    attacker_key = bytes(31) + b"\x07"
    mine = bytearray(seal(inner_intent(), PUBLIC, 1, DOMAIN, attacker_key, b"\x55" * 32))
    mine[17:37] = bytes.fromhex("6813eb9362372eef6200f3b1dbc3f819671cba69")  # its address
    mine[45:142] = victim.kem
    with pytest.raises(FairnessError) as error:
        verify_envelope(decode_envelope(bytes(mine)), DOMAIN)
    assert error.value.code in ("bad_kem_proof", "high_s", "invalid_signature")


def _reseal(envelope: Envelope, plaintext: bytes) -> Envelope:
    """Same header and key, another plaintext (what a buggy or malicious client sends)."""
    body = crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, envelope.header, envelope.aead_nonce, _key(envelope)
    )
    return decode_envelope(envelope.header + body + envelope.signature)


def test_deterministic_rejections() -> None:
    envelope = decode_envelope(_sealed())
    packed = pack_intent(inner_intent())
    other_nonce = pack_intent(sign_intent(PRIVATE_KEY, ACCOUNT, 1, vectors.ACTION, DOMAIN))
    cases = {
        "envelope_mismatch": pad(other_nonce),
        "bad_padding": pad(packed)[:-1] + b"\x01",
        "bad_inner_intent": pad(b"\xc0" * 10),
    }
    for code, plaintext in cases.items():
        outcome = open_envelope(_reseal(envelope, plaintext), _key(envelope))
        assert isinstance(outcome, Rejected) and outcome.code == code
    too_long = len(packed).to_bytes(2, "big") + packed + bytes(256 * 2 - 2 - len(packed))
    outcome = open_envelope(_reseal(envelope, too_long), _key(envelope))
    assert isinstance(outcome, Rejected) and outcome.code == "bad_padding"  # not minimal
    outcome = open_envelope(envelope, bytes(32))
    assert isinstance(outcome, Rejected) and outcome.code == "undecryptable"


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=MAX_ENVELOPE_BYTES + 10))
def test_property_decoding_arbitrary_bytes_is_an_error_or_an_envelope(data: bytes) -> None:
    try:
        envelope = decode_envelope(data)
    except FairnessError:
        return
    with contextlib.suppress(FairnessError):
        verify_envelope(envelope, DOMAIN)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=MIN_ENVELOPE_BYTES - 1), st.integers(1, 255))
def test_property_no_single_byte_change_keeps_a_valid_envelope(position: int, flip: int) -> None:
    raw = bytearray(_sealed())
    raw[position] ^= flip
    try:
        envelope = decode_envelope(bytes(raw))
        signer, _ = verify_envelope(envelope, DOMAIN)
    except FairnessError:
        return
    # Only the signature's v byte (27 ↔ 28 ↔ 0/1 spellings) may still recover the signer,
    # and then the content is untouched.
    if signer == ACCOUNT:
        assert position == MIN_ENVELOPE_BYTES - 1
        assert open_envelope(envelope, _key(envelope)) == inner_intent()


def test_envelope_signature_is_standard_eip712() -> None:
    # eth-account, from the typed data as a wallet would see it, recovers the account.

    raw = _sealed()
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "EncryptedIntent": [{"name": "hash", "type": "bytes32"}],
        },
        "primaryType": "EncryptedIntent",
        "domain": {
            "name": "seqnet",
            "version": "1",
            "chainId": DOMAIN.chain_id,
            "verifyingContract": "0x" + DOMAIN.verifying_contract.hex(),
        },
        "message": {"hash": keccak256(raw[:-65])},
    }
    signer = Account.recover_message(encode_typed_data(full_message=typed), signature=raw[-65:])
    assert signer.lower() == "0x" + ACCOUNT.hex()


def test_key_id_follows_the_documented_framing() -> None:

    tag = b"seqnet/fairness/key-id/v1"
    data = PUBLIC.encode()
    framed = len(tag).to_bytes(2, "big") + tag + len(data).to_bytes(4, "big") + data
    assert PUBLIC.key_id == hashlib.sha256(framed).digest()


def test_a_re_signed_header_verifies_but_names_the_re_signer() -> None:
    # The header and KEM of a victim's envelope, a garbage body, signed by a leader: the
    # KEM proof holds (same label), so only the signer rule (§10.5) stops members from
    # opening R early. The signer recovered is the leader's, never the account.

    victim = decode_envelope(_sealed())
    leader_key = bytes(31) + b"\x07"
    unsigned = victim.header + bytes(len(victim.ciphertext))

    raw = coincurve.PrivateKey(leader_key).sign_recoverable(
        envelope_digest(unsigned, DOMAIN), hasher=None
    )
    forged = decode_envelope(unsigned + raw[:64] + bytes([27 + raw[64]]))
    assert len(forged.signature) == SIGNATURE_BYTES
    signer, _ = verify_envelope(forged, DOMAIN)
    assert signer == address_of_private_key(leader_key) != forged.account
