"""Outbound voice robot (外呼机器人): call scripts, speech and DTMF, SIP calls
and campaigns. Phone numbers stay here, off chain; the ledger records only a
campaign's template hash and its counts (``chaincode/calls.py``)."""
