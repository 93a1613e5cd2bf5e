"""HotStuff consensus core (DiemBFT v4 / Jolteon 2-chain): a pure state machine, no I/O."""
