"""Typed contract errors. A rejected command raises one and writes nothing.

Each error crosses process boundaries (embedded ledger, Fabric peer response) as
JSON ``{"error": <code>, "message": ..., "field": ...}`` and is rebuilt on the
client side by :func:`from_payload`, so both ledgers raise the same type.
"""

from __future__ import annotations

import json
from typing import Any


class ContractError(Exception):
    code = "ContractError"
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_payload(self) -> str:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return json.dumps(body, ensure_ascii=False)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(ContractError):
    code = "InvalidArgument"


class Unauthorized(ContractError):
    code = "Unauthorized"
    status = 403


class NotFound(ContractError):
    code = "NotFound"
    status = 404


class Conflict(ContractError):
    """The command contradicts recorded state (duplicate, wrong status, closed day)."""

    code = "Conflict"
    status = 409


class ChecksFailed(ContractError):
    """A code scheme cannot be approved: one of the on-chain checks failed."""

    code = "ChecksFailed"
    status = 409


_TYPES = {c.code: c for c in (ContractError, InvalidArgument, Unauthorized,
                              NotFound, Conflict, ChecksFailed)}


def from_payload(text: str) -> ContractError | None:
    """Rebuild a typed error from its JSON payload; None if it is not one."""
    try:
        body = json.loads(text)
        cls = _TYPES[body["error"]]
        return cls(str(body["message"]), body.get("field"))
    except (ValueError, KeyError, TypeError):
        return None
