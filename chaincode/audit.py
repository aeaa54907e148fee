"""Audit queries: what an auditor asks of the ledger beyond current state.

``KeyHistory`` returns every committed version of one world-state key as the
ledger's history index records it (Fabric's ``GetHistoryForKey``). Block numbers,
transaction positions and creators are not visible to chaincode; the client fills
them in from the blocks (see ``ledger/fabric/gateway.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chaincode.registry import Args, Context, query

# Keys are ``~``-separated ASCII; the bound only stops an absurd argument early.
Key = Annotated[str, Field(min_length=1, max_length=1024)]


class KeyHistoryArgs(Args):
    key: Key


@query("KeyHistory", KeyHistoryArgs)
def key_history(ctx: Context, a: KeyHistoryArgs) -> dict[str, Any]:
    """Every version of ``a.key``, in the order the ledger's history gives them:
    transaction id, transaction time (ISO 8601), the value as text (None for a
    delete) and whether the version is a delete."""
    versions = [{"tx_id": m.tx_id, "timestamp": m.timestamp.isoformat(),
                 "value": None if m.is_delete else m.value.decode("utf-8", "replace"),
                 "is_delete": m.is_delete}
                for m in ctx.stub.get_history_for_key(a.key)]
    return {"key": a.key, "history": versions}
