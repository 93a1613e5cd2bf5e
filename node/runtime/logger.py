"""The one logger of the member runtime ("seqnet.node"): every module of node/runtime/
logs through this object, so a test or the simulator that re-points structlog reaches
them all at once."""

from __future__ import annotations

import structlog

log = structlog.get_logger("seqnet.node")
