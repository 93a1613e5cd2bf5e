"""Settlement contracts: Solidity sources, committed build artifacts, Python bindings."""
