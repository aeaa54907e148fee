"""The cityunion contract: every family's commands and queries in one registry.

The contract grows by family, one module each (``identifiers``, ``codes``,
``issuing``, ``usage``, ``cards``, ``settlement``, ``blacklist``, ``audit``,
``cameras``, ``calls``), all registering into ``chaincode.registry``;
importing this module registers them all, and ``invoke`` is what a ledger runs
(the embedded node and the chaincode server alike).
"""

from __future__ import annotations

from chaincode import (
    audit,
    blacklist,
    calls,
    cameras,
    cards,
    codes,
    identifiers,
    issuing,
    settlement,
    usage,
)
from chaincode.cards import MAX_BATCH_RECORDS, CardRecord, card_leaf
from chaincode.identifiers import derive_identifier_id
from chaincode.registry import (
    COMMANDS,
    EVENT_NAME,
    QUERIES,
    Args,
    Ciphertext,
    CodeType,
    Context,
    Day,
    Hash,
    Name,
    Text,
    command,
    event_payload,
    invoke,
    query,
)

FAMILIES = (identifiers, codes, issuing, cards, settlement, blacklist, audit,
            cameras, calls, usage)

__all__ = ["COMMANDS", "EVENT_NAME", "FAMILIES", "MAX_BATCH_RECORDS", "QUERIES",
           "Args", "CardRecord", "Ciphertext", "CodeType", "Context", "Day", "Hash",
           "Name", "Text", "card_leaf", "command", "derive_identifier_id",
           "event_payload", "invoke", "query"]
