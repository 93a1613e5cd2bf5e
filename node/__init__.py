"""The trio runtime around the pure cores: transport, mempool, storage, API, CLI."""
