"""The HTTP API (FastAPI): commands go to the ledger as the token's identity,
queries read the projections. ``app.create_app`` builds it; ``cityunion serve``
runs it.
"""
