"""Endorse proposals in a separate process (another "endorser") and print what
the contract would write: ``python simulate_child.py DATA_DIR PROPOSALS_JSON``.

Used by test_determinism to show that write sets and events do not depend on
the process (hash seed, object addresses): nothing is written to the ledger.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ledger.embedded import EmbeddedNode


def main(data_dir: str, proposals_file: str) -> None:
    node = EmbeddedNode(data_dir, read_only=True)
    out = []
    for item in json.loads(Path(proposals_file).read_text()):
        stub, response = node.simulate(item["proposal"],
                                        bytes.fromhex(item["signature"]), None)
        assert stub.event is not None
        out.append({"writes": list(stub.writes.items()),
                    "event": [stub.event[0], stub.event[1].hex()],
                    "response": response.hex()})
    node.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
