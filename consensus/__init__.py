"""HotStuff consensus core (DiemBFT v4 / Jolteon 2-chain): a pure state machine, no I/O.

Start at `consensus.core` (the runtime interface: events in, actions out, and which
actions must complete before which); the protocol and its wire format are in
docs/CONSENSUS.md.
"""
