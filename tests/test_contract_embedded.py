"""The contract on the embedded ledger only, where a test needs what only that
ledger has. The scenario suite (tests/scenarios) covers the contract on every
ledger.

A proposal can be made by hand here, with arguments no client of the Ledger
protocol sends (their JSON is UTF-8, which cannot hold an unpaired surrogate).

The embedded node signs blocks as Center's ``node``, an auditor, and keeps that
identity in the wallet it hands out; a Fabric wallet has no such user. Being an
auditor, it may call no command.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import CENTER, VALID, Clients, World, build_world, rejected

from chaincode.encoding import canonical_json
from chaincode.errors import ContractError, InvalidArgument, Unauthorized
from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedLedger, EmbeddedNode


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


@pytest.mark.parametrize(("function", "field"), [
    ("RevokeIdentifier", "reason"), ("RegisterDepartment", "name"),
    ("RejectCodeScheme", "reason"), ("DisputeTransactions", "reason"),
    ("RegisterDepartment", "code")])
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83dy"])
def test_unpaired_surrogate_is_refused_naming_the_field(
        shared: World, function: str, field: str, escape: str) -> None:
    caller, make = VALID[function]
    client = shared.ids(*caller)
    assert isinstance(client, EmbeddedLedger)
    proposal, _ = client._proposal(function, {**make(shared), field: "PLACEHOLDER"})
    proposal["args"] = proposal["args"].replace("PLACEHOLDER", escape)
    signature = client.identity.sign(canonical_json(proposal), shared.node.backend)
    before = shared.node.height()
    with pytest.raises(ContractError) as info:
        shared.node.submit(proposal, signature)
    assert type(info.value) is InvalidArgument
    assert info.value.field == field
    assert "unpaired surrogate" in info.value.message
    assert shared.node.height() == before
