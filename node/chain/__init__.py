"""The settlement loop's room: the chain watcher (deposits into consensus), the
checkpointer (signatures gathered and submitted) and the local chain for localnet and
tests (docs/SETTLEMENT.md)."""
