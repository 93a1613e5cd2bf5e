"""Suite-wide settings. Fast keccak for eth-hash must be chosen before eth_hash is imported."""

import os

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
