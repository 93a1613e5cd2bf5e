"""Suite-wide settings.

- Fast keccak for eth-hash must be chosen before eth_hash is imported.
- Tests marked `slow` (soak and long simulation sweeps) run only with SEQNET_SLOW=1.
- Under pytest-xdist (`./dev test` runs two processes), the tests marked `integration`
  (node processes, anvil, a localnet) share one group, so they run one at a time in one
  process while the other takes the in-process tests: two of them at once would share
  two cores among eight members and two chains.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

# Simulator sweeps are pure CPU: alone they use both cores (worker processes); beside
# another xdist process, one.
SIM_JOBS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    processes = pytest.mark.xdist_group("processes")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(processes)
    if os.environ.get("SEQNET_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set SEQNET_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
