"""Impartial sequencing, the cryptography (issue 15, phase 1): pure, no I/O.

- `group.py`     secp256k1 scalars and points (coincurve), domain-separated hashing
- `proofs.py`    Chaum-Pedersen (DLEQ) and Schnorr proofs, non-interactive
- `threshold.py` the committee key, the threshold ElGamal KEM, decryption shares,
                 combination from any t valid shares, the test-only dealer
- `dkg.py`       the distributed key generation as a state machine (events in, actions out)
- `envelope.py`  the encrypted-intent envelope traders sign (PROTOCOL.md §10)

Randomness, where needed (a dealer's polynomial, a trader's encryption), is an argument;
everything a member computes from a secret (proof nonces) is derived deterministically.
docs/FAIRNESS.md says what this protects and why these choices.
"""
