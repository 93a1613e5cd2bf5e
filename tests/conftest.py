"""Suite-wide settings.

- Fast keccak for eth-hash must be chosen before eth_hash is imported.
- Tests marked `slow` (soak and long simulation sweeps) run only with SEQNET_SLOW=1.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SEQNET_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set SEQNET_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
