"""Deterministic exchange state machine: books, accounts, state root, proofs. Pure: no I/O."""
