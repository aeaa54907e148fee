"""The Fabric ledger: a Gateway client over the official protos, identities from a
network directory's wallet, and offline verification of delivered blocks."""
