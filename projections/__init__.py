"""The read side: projections of the ledger's committed events into read models
(SQLite by default, PostgreSQL with a DSN), followed exactly once and in order.

``db`` is the SQL layer, ``views`` the read models and their projections,
``follower`` applies committed events with their positions, ``queries`` reads
the views for the API.
"""
