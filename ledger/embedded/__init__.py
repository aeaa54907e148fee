"""The embedded ledger: the contract, MVCC world state and an SM3/SM2 block chain
in one process, stored in SQLite (default) or PostgreSQL.

Flow, as on Fabric: a client (``client``) signs a proposal; the node checks the
creator's certificate chain and signature and simulates the contract against
committed state, recording reads (with versions) and writes (``endorse``); the
committer (``ledger/committer.py``, placed in a thread or a process of its own by
``committing``) cuts blocks by count or time, marks a transaction whose reads went
stale ``MVCC_READ_CONFLICT`` (its writes are not applied), links the block to the
previous one by SM3 hash, signs it with the node's SM2 key and writes it in one
database transaction. A submit's future resolves only after that commit.
``node`` holds the directory, its locks, the wallet and the genesis block;
``reads`` decodes what is stored.
"""

from chaincode.errors import ContractError
from ledger.committer import (  # the status names are part of this package's API
    DUPLICATE_TXID,
    GENESIS_PREVIOUS,
    MVCC_READ_CONFLICT,
    PHANTOM_READ_CONFLICT,
    VALID,
    data_hash,
)
from ledger.embedded.client import EmbeddedLedger
from ledger.embedded.endorse import EmbeddedStub, split_events
from ledger.embedded.node import EmbeddedNode
from ledger.embedded.reads import block_summary

_split_events = split_events  # the name the tests import

__all__ = ["DUPLICATE_TXID", "GENESIS_PREVIOUS", "MVCC_READ_CONFLICT",
           "PHANTOM_READ_CONFLICT", "VALID", "ContractError", "EmbeddedLedger",
           "EmbeddedNode", "EmbeddedStub", "block_summary", "data_hash",
           "split_events"]
