"""This node's SM2 signing key, for documents terminals check offline (the
blacklist delta): made on first use in the data directory, mode 0600; its public
key is served at ``/api/signing-key`` for terminals to pin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ledger import crypto
from ledger.crypto.sealed import seal

KEY_FILE = "api-signing-key.pem"


class NodeSigner:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / KEY_FILE
        self._pair: tuple[bytes, bytes] | None = None

    @property
    def pair(self) -> tuple[bytes, bytes]:
        """(private, public) of this node's signing key."""
        if self._pair is None:
            if not self.path.exists():
                private, _ = crypto.get_backend().sm2_generate()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o600)
                except FileExistsError:  # another process made it first
                    pass
                else:
                    with os.fdopen(fd, "wb") as f:
                        f.write(crypto.private_key_to_pem(private))
            private = crypto.private_key_from_pem(self.path.read_bytes())
            self._pair = (private,
                          crypto.get_backend().sm2_public_from_private(private))
        return self._pair

    @property
    def public_pem(self) -> str:
        return crypto.public_key_to_pem(self.pair[1]).decode()

    def seal(self, document: dict[str, Any]) -> dict[str, Any]:
        return seal(document, *self.pair)
