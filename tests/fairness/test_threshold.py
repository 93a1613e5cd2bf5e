"""Threshold ElGamal KEM: keys, shares, proofs, combination."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.fairness import threshold
from node.fairness.errors import FairnessError
from node.fairness.group import N, base_mul, decode_point, double_mul, encode_point, lincomb, mul
from node.fairness.proofs import prove_dleq, verify_dleq
from node.fairness.threshold import (
    DEV_CHAIN_ID,
    DecryptionShare,
    ThresholdPublicKey,
    combine,
    create_share,
    dealer_keygen,
    encapsulate,
    lagrange_at_zero,
    open_ciphertext,
    verify_share,
)

LABEL = b"test label"


def _setup(n: int, t: int, seed: bytes = b"k" * 32):
    public, shares = dealer_keygen(n, t, seed, chain_id=DEV_CHAIN_ID)
    ciphertext, key = encapsulate(public, LABEL, b"r" * 32)
    r_point = open_ciphertext(ciphertext, LABEL)
    return public, shares, r_point, key, [create_share(s, public, r_point) for s in shares]


@pytest.mark.parametrize(("n", "t"), [(1, 1), (4, 2), (7, 3)])
def test_any_t_of_n_shares_decrypt(n: int, t: int) -> None:
    public, _, r_point, key, decryption = _setup(n, t)
    for subset in itertools.combinations(decryption, t):
        result = combine(public, r_point, subset)
        assert result.key == key
        assert result.used == tuple(s.index for s in subset)


@pytest.mark.parametrize(("n", "t"), [(4, 2), (7, 3)])
def test_fewer_than_t_shares_do_not_decrypt(n: int, t: int) -> None:
    public, shares, r_point, _key, decryption = _setup(n, t)
    for subset in itertools.combinations(decryption, t - 1):
        with pytest.raises(FairnessError) as error:
            combine(public, r_point, subset)
        assert error.value.code == "not_enough_shares"
    # The dealer's secret x (only a test can know it), and x·R, the point the key hides.
    everyone = lagrange_at_zero([s.index for s in shares[:t]])
    secret = sum(everyone[s.index] * s.secret for s in shares[:t]) % N
    assert base_mul(secret).format() == public.public_key
    # Interpolating t−1 shares as if they were enough gives some other point.
    subset = decryption[: t - 1]
    lambdas = lagrange_at_zero([s.index for s in subset])
    wrong = lincomb((decode_point(s.point), lambdas[s.index]) for s in subset)
    assert encode_point(wrong) != encode_point(mul(r_point, secret))


def test_forged_shares_are_rejected_and_named() -> None:
    public, _shares, r_point, key, decryption = _setup(7, 3)
    honest = decryption
    forged_point = DecryptionShare(2, encode_point(mul(r_point, 12345)), honest[1].proof)
    forged_proof = DecryptionShare(3, honest[2].point, bytes(64))
    relabelled = DecryptionShare(4, honest[0].point, honest[0].proof)  # member 1's, as 4
    out_of_range = DecryptionShare(9, honest[5].point, honest[5].proof)
    not_a_point = DecryptionShare(5, b"\x02" + b"\xff" * 32, honest[4].proof)
    # A consistent proof for a wrong share made with a secret that is not member 6's.
    other = prove_dleq(777, r_point, b"anything")
    self_consistent = DecryptionShare(6, encode_point(mul(r_point, 777)), other)
    bad = [forged_point, forged_proof, relabelled, out_of_range, not_a_point, self_consistent]
    for share in bad:
        assert not verify_share(public, r_point, share)
    result = combine(public, r_point, [*bad, honest[6], honest[0], honest[3]])
    assert result.key == key
    assert result.invalid == (2, 3, 4, 9, 5, 6)
    assert result.used == (7, 1, 4)


def test_withheld_and_forged_shares_cannot_block_t_honest() -> None:
    # n = 7, f = 2: two members forge, two withhold; three honest shares suffice.
    public, _, r_point, key, decryption = _setup(7, 3)
    forged = [DecryptionShare(i, decryption[i - 1].point, bytes(64)) for i in (1, 2)]
    honest = [decryption[i - 1] for i in (5, 6, 7)]
    assert combine(public, r_point, forged + honest).key == key
    with pytest.raises(FairnessError):
        combine(public, r_point, forged + honest[:2])


def test_duplicate_shares_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    public, _, r_point, _, decryption = _setup(4, 2)
    with pytest.raises(FairnessError):
        combine(public, r_point, [decryption[0], decryption[0], decryption[0]])
    # A flood of bad shares under one index costs one proof check, not one each.
    checks = []
    real = threshold.verify_share
    monkeypatch.setattr(threshold, "verify_share", lambda *a: checks.append(1) or real(*a))
    forged = DecryptionShare(2, decryption[1].point, bytes(64))
    result = combine(public, r_point, [forged] * 1000 + [decryption[1], decryption[3]])
    assert result.invalid == (2,) and result.used == (2, 4) and len(checks) == 3


def test_kem_proof_binds_the_label() -> None:
    public, _ = dealer_keygen(4, 2, b"k" * 32, chain_id=DEV_CHAIN_ID)
    ciphertext, _ = encapsulate(public, LABEL, b"r" * 32)
    with pytest.raises(FairnessError) as error:
        open_ciphertext(ciphertext, b"someone else's header")
    assert error.value.code == "bad_kem_proof"
    copied = bytearray(ciphertext)
    copied[40] ^= 1
    with pytest.raises(FairnessError):
        open_ciphertext(bytes(copied), LABEL)
    with pytest.raises(FairnessError) as error:
        open_ciphertext(ciphertext[:-1], LABEL)
    assert error.value.code == "bad_kem"


def test_dealer_mode_refused_off_the_dev_chain() -> None:
    with pytest.raises(FairnessError) as error:
        dealer_keygen(4, 2, b"k" * 32, chain_id=1)
    assert error.value.code == "dealer_refused"


def test_dev_chain_id_is_the_runtimes() -> None:
    from node.runtime.options import DEV_CHAIN_ID as RUNTIME_DEV_CHAIN_ID

    assert DEV_CHAIN_ID == RUNTIME_DEV_CHAIN_ID


def test_key_encoding_round_trips_and_is_strict() -> None:
    public, _ = dealer_keygen(7, 3, b"k" * 32, chain_id=DEV_CHAIN_ID)
    data = public.encode()
    assert len(data) == 5 + 33 * 8
    assert ThresholdPublicKey.decode(data) == public
    for bad in (data[:-1], b"\x02" + data[1:], data[:1] + b"\x00\x08" + data[3:], b""):
        with pytest.raises(FairnessError):
            ThresholdPublicKey.decode(bad)
    broken = bytearray(data)
    broken[5] = 4  # not a compressed-point prefix
    with pytest.raises(FairnessError) as error:
        ThresholdPublicKey.decode(bytes(broken))
    assert error.value.code == "bad_point"


def test_share_encoding() -> None:
    _, _, _, _, decryption = _setup(4, 2)
    assert DecryptionShare.decode(decryption[0].encode()) == decryption[0]
    with pytest.raises(FairnessError):
        DecryptionShare.decode(decryption[0].encode() + b"\x00")


def test_dleq_rejects_wrong_statements() -> None:
    h = base_mul(99)
    proof = prove_dleq(5, h, b"ctx")
    assert verify_dleq(h, base_mul(5), mul(h, 5), proof, b"ctx")
    assert not verify_dleq(h, base_mul(5), mul(h, 5), proof, b"other ctx")
    assert not verify_dleq(h, base_mul(5), mul(h, 6), proof, b"ctx")
    assert not verify_dleq(h, base_mul(5), mul(h, 5), proof[:32] + N.to_bytes(32, "big"), b"ctx")


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=1, max_value=7).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(min_value=1, max_value=n))
    ),
    st.binary(min_size=32, max_size=32),
    st.randoms(use_true_random=False),
)
def test_property_any_valid_quorum_recovers_the_key(shape, seed, rng) -> None:
    n, t = shape
    public, shares = dealer_keygen(n, t, seed, chain_id=DEV_CHAIN_ID)
    ciphertext, key = encapsulate(public, LABEL, seed[::-1])
    r_point = open_ciphertext(ciphertext, LABEL)
    chosen = rng.sample(shares, t)
    assert combine(public, r_point, [create_share(s, public, r_point) for s in chosen]).key == key


@pytest.mark.parametrize("a", [0, 1, 7, N - 1, 2**200 + 3])
@pytest.mark.parametrize("b", [0, 1, 5, N - 2, 2**255 - 19])
def test_double_mul_is_the_plain_linear_combination(a: int, b: int) -> None:
    """a·G + b·P through ECDSA recovery equals the two multiplications and the sum."""
    p = base_mul(0xC0FFEE)
    if a % N == 0 and b % N == 0:
        with pytest.raises(FairnessError, match="identity"):
            double_mul(a, b, p)
        return
    assert encode_point(double_mul(a, b, p)) == encode_point(lincomb(((None, a), (p, b))))


def test_double_mul_reports_the_point_at_infinity() -> None:
    p = base_mul(9)
    with pytest.raises(FairnessError, match="identity"):
        double_mul(9, N - 1, p)  # 9·G − P = ∞
