"""Submit forever from several threads, printing each acknowledged tx id.

``python crash_child.py DATA_DIR THREADS [thread|process]`` (the committer).
test_crash kills this process with SIGKILL at a random moment: every tx id
printed before that was acknowledged (``submit`` returned after the block's
database commit) and must survive.
"""

from __future__ import annotations

import hashlib
import sys
import threading

from ledger.embedded import EmbeddedLedger, EmbeddedNode

USERS = [(city, user) for city in ("Shanghai", "Kunshan", "Taicang")
         for user in ("transport", "health", "admin")]


def main(data_dir: str, threads: int, committer: str) -> None:
    node = EmbeddedNode(data_dir, committer=committer)
    out = threading.Lock()
    # Department users act only for a department registered on chain.
    for city in sorted({city for city, _ in USERS}):
        admin = EmbeddedLedger(node, node.wallet.identity(city, "admin"))
        for code in sorted({u for _, u in USERS if u != "admin"}):
            admin.submit("RegisterDepartment", {"code": code, "name": code.title(),
                                                "duties": [code]})

    def work(index: int) -> None:
        city, user = USERS[index % len(USERS)]
        client = EmbeddedLedger(node, node.wallet.identity(city, user))
        n = 0
        while True:
            n += 1
            nk = hashlib.new("sm3", f"{data_dir}|{index}|{n}".encode()).hexdigest()
            receipt = client.submit("RegisterIdentifier", {
                "kind": "person", "category": "identity", "scheme": f"crash{index}",
                "natural_key_hash": nk})
            with out:  # one whole line per write, flushed before the next submit
                sys.stdout.write(receipt.tx_id + "\n")
                sys.stdout.flush()

    workers = [threading.Thread(target=work, args=(i,), daemon=True)
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]),
         sys.argv[3] if len(sys.argv) > 3 else "thread")
