"""The storage room: the safety record (its own preallocated, fsynced file), blocks, the
committed log, engine snapshots (SQLite in WAL mode), checksums on every value, and the
in-memory store with the same semantics (storage.py)."""
