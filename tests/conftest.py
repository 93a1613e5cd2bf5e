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


# First, so that xdist's own hook (which turns the group into a node-id suffix that
# `--dist loadgroup` schedules by) sees the marker.
@pytest.hookimpl(tryfirst=True)
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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when `--dist loadgroup` would not keep the process tests together
    (pytest 9.2 moved node ids where xdist 3.8 writes the group; two localnets at once then
    race, e.g. on the TypeScript client's build folder)."""
    if not session.config.getoption("loadgroup", default=False):
        return
    loose = [i.nodeid for i in session.items if "integration" in i.keywords and "@" not in i.nodeid]
    if loose:
        raise pytest.UsageError(f"xdist groups not applied (pytest/xdist versions?): {loose[0]}")
