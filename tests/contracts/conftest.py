"""One settlement test suite, run against py-evm (in-process) and anvil (JSON-RPC).

`chain` starts each backend once per session; `world` deploys a fresh Settlement and the
test tokens for every test, so tests never share contract state (time only moves forward,
and a fresh deployment restarts the escape-delay clock).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.chain import Chain, local_chain
from tests.contracts.settlement_world import World, make_world


@pytest.fixture(scope="session", params=["py-evm", "anvil"])
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    with local_chain(request.param) as c:
        yield c


@pytest.fixture
def world(chain: Chain) -> World:
    return make_world(chain)
