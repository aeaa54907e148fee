"""The ledger: one protocol, an embedded implementation (and later Fabric)."""
