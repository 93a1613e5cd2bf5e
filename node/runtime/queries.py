"""Read-only answers from the executed state, for the API (`QueryFacade`): balances and
open orders, checkpoints, withdrawal and balance proofs. Plain functions of the engine:
they never change it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matching.config import Asset
from matching.engine import Engine

if TYPE_CHECKING:
    from node.chain.checkpointer import Checkpointer


def hexed(data: bytes) -> str:
    return "0x" + data.hex()


def jsonable(value: Any) -> Any:
    """Bytes as 0x-hex, recursively (status and checkpoint records for JSON)."""
    if isinstance(value, bytes):
        return hexed(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def account(engine: Engine, height: int, assets: Sequence[Asset], address: bytes) -> dict[str, Any]:
    balances = {}
    for asset in assets:
        available, locked = engine.balance(address, asset.id)
        balances[asset.symbol] = {"asset": asset.id, "available": available, "locked": locked}
    orders = [
        {
            "oid": o.oid,
            "market": o.book.id,
            "side": "buy" if o.is_buy else "sell",
            "price": o.price,
            "size": o.size,
            "cloid": o.cloid,
            "expires_ms": o.expires_ms,
        }
        for o in engine.open_orders(address)
    ]
    return {
        "address": hexed(address),
        "height": height,
        "balances": balances,
        "open_orders": orders,
    }


def checkpoints(
    engine: Engine, checkpointer: Checkpointer | None, interval_blocks: int
) -> list[dict[str, Any]]:
    """Ascending by sequence; each with the committed `height` that sealed it (every
    checkpoint-interval height seals the next sequence: height = sequence × interval)."""
    if checkpointer is not None:
        return [
            {**jsonable(c), "height": c["sequence"] * interval_blocks}
            for c in checkpointer.checkpoints()
        ]
    return [
        {
            "sequence": c.sequence,
            "height": c.sequence * interval_blocks,
            "state_root": hexed(c.state_root),
            "withdrawals_root": hexed(c.withdrawals_root),
            "last_deposit_id": c.last_deposit_id,
            "withdrawals": len(c.withdrawals),
        }
        for c in engine.withdrawal_trees.checkpoints()
    ]


def withdrawal_proof(engine: Engine, sequence: int, withdrawal_id: int) -> dict[str, Any] | None:
    found = engine.withdrawal_proof(sequence, withdrawal_id)
    if found is None:
        return None
    leaf, proof = found
    checkpoint = next(c for c in engine.withdrawal_trees.checkpoints() if c.sequence == sequence)
    w = next(w for w in checkpoint.withdrawals if w.withdrawal_id == withdrawal_id)
    return {
        "sequence": sequence,
        "withdrawal_id": withdrawal_id,
        "account": hexed(w.account),
        "token": hexed(w.token),
        "amount": str(w.amount),  # token base units; may exceed 2**53
        "leaf": hexed(leaf),
        "proof": [hexed(p) for p in proof],
        "withdrawals_root": hexed(checkpoint.withdrawals_root),
    }


def balance_proof(engine: Engine, address: bytes, asset_id: int) -> dict[str, Any] | None:
    found = engine.balance_proof(address, asset_id)
    account = engine.accounts.get(address)
    if found is None or account is None:
        return None
    leaf, proof = found
    index = account.leaf[engine.asset_index[asset_id]]
    asset = engine.assets[engine.asset_index[asset_id]]
    return {
        "account": hexed(address),
        "token": hexed(asset.token),
        "balance": str(engine.state.totals[index] * asset.unit),  # as of the checkpoint
        "sequence": engine.sequence,
        "leaf": hexed(leaf),
        "proof": [hexed(p) for p in proof],
    }
