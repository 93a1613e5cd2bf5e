"""docs/openapi.json is the document a node serves at /v1/openapi.json.

Regenerate after changing a route: `python -m tests.api.test_openapi`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio

from node.api.app import create_app, serve_api
from tests.api.exchange import ExchangeNode

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def generated() -> dict[str, Any]:
    """What a full node serves (default limits; engine, indexer and queries present)."""
    schema: dict[str, Any] = create_app(ExchangeNode()).openapi()
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


async def test_committed_openapi_equals_served(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_api, create_app(ExchangeNode()), "127.0.0.1", 0)
    async with httpx.AsyncClient() as http:
        served = (await http.get(f"http://127.0.0.1:{port}/v1/openapi.json")).json()
    assert render(served) == COMMITTED.read_text(), (
        "docs/openapi.json is stale: run `python -m tests.api.test_openapi`"
    )


def test_every_route_documented() -> None:
    paths = generated()["paths"]
    for path in (
        "/v1/intents",
        "/v1/markets",
        "/v1/markets/{market}/book",
        "/v1/markets/{market}/trades",
        "/v1/accounts/{address}/orders",
        "/v1/accounts/{address}/history",
        "/v1/accounts/{address}/fills",
        "/v1/accounts/{address}/orders/cloid/{cloid}",
        "/v1/orders/{oid}",
        "/v1/markets/{market}/candles",
        "/v1/markets/{market}/stats",
        "/v1/accounts/{address}",
        "/v1/accounts/{address}/deposits",
        "/v1/accounts/{address}/withdrawals",
        "/v1/withdrawals/{withdrawal_id}",
        "/v1/withdrawals/{withdrawal_id}/claim",
        "/v1/proofs/withdrawal/{sequence}/{withdrawal_id}",
        "/v1/proofs/balance/{address}/{asset_id}",
        "/v1/checkpoints",
        "/v1/status",
        "/v1/domain",
        "/metrics",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path


def test_every_json_route_has_a_response_schema() -> None:
    """No `{}`: each route's 200 answer names its shape (the status route is the node's
    free-form report, and /metrics is text)."""
    for path, operations in generated()["paths"].items():
        for method, operation in operations.items():
            if path in ("/v1/status", "/metrics"):
                continue
            content = operation["responses"]["200"].get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            assert schema, f"{method.upper()} {path} has no response schema"


if __name__ == "__main__":
    COMMITTED.write_text(render(generated()))
    print(f"wrote {COMMITTED}")
