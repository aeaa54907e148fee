"""The cityunion contract: deterministic chaincode shared by every member city.

The same code runs in the embedded ledger and, as a service, on Fabric peers.
"""
