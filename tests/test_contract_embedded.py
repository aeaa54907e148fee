"""The contract on the embedded ledger only, where a test needs what only that
ledger has. The scenario suite (tests/scenarios) covers the contract on every
ledger.

The embedded node signs blocks as Center's ``node``, an auditor, and keeps that
identity in the wallet it hands out; a Fabric wallet has no such user. Being an
auditor, it may call no command.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import CENTER, VALID, Clients, World, build_world, rejected

from chaincode.errors import Unauthorized
from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedNode


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = EmbeddedNode(tmp_path_factory.mktemp("contract-embedded") / "ledger")
    try:
        yield build_world(Clients(EmbeddedConnection(node)))
    finally:
        node.close()


@pytest.mark.parametrize("function", sorted(VALID))
def test_the_node_identity_may_call_no_command(shared: World, function: str) -> None:
    err = rejected(shared.ids, (CENTER, "node"), function,
                   VALID[function][1](shared), Unauthorized)
    assert function in err.message
    assert "the caller is auditor" in err.message
