"""The Fabric Gateway client without a Fabric network.

The proposal, the prepared-transaction parsing, the error mapping and the event
positions are checked directly; the call flow (Endorse → sign → Submit →
CommitStatus, Evaluate, ChaincodeEvents with a broken stream, qscc) runs against
``FakeGateway``, a Gateway service played over real gRPC with TLS, which checks
every signature the way a peer does (the creator's certificate, low S).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("CI"):  # in CI a missing extra is a failure, not a skip
    pytest.importorskip("grpc")
    pytest.importorskip("fabric_protos")
    pytest.importorskip("grpc_status")

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from chaincode.encoding import canonical_json
from chaincode.errors import Conflict, ContractError, InvalidArgument, NotFound
from ledger.fabric.gateway import (
    FabricLedger,
    FabricNetwork,
    GatewayFailure,
    block_chaincode_events,
    build_proposal,
    chaincode_action,
    committed_events,
    contract_error_in,
)
from ledger.fabric.identity import P256_ORDER, FabricIdentity
from ledger.protocol import (
    CommitError,
    EndorseError,
    LedgerError,
    Position,
    SubmitError,
)

CHANNEL = "cityunion"
CHAINCODE = "cityunion"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
WAIT = 10.0  # seconds; bounds a failure only


# --------------------------------------------------------------- identities
def _certificate(key: ec.EllipticCurvePrivateKey, common_name: str,
                 ip: str | None = None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(T0 - timedelta(days=365))
               .not_valid_after(T0 + timedelta(days=3650)))
    if ip:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]),
            critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_identity(msp_id: str = "KunshanMSP", name: str = "admin@kunshan"
                  ) -> FabricIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    return FabricIdentity(msp_id, _certificate(key, name), _pem_key(key), name)


def check_signature(serialized_creator: bytes, message: bytes,
                    signature: bytes) -> None:
    """As a peer: the signature verifies with the creator certificate's key and
    its S is in the lower half of the order."""
    creator = identities_pb2.SerializedIdentity.FromString(serialized_creator)
    public = x509.load_pem_x509_certificate(creator.id_bytes).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    assert decode_dss_signature(signature)[1] <= P256_ORDER // 2, "high S"


# ---------------------------------------------------- transactions and blocks
def _parts(signed: Any) -> tuple[Any, Any, Any, Any]:
    """Header, channel header, signature header, invocation spec of a proposal."""
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    return (header, common_pb2.ChannelHeader.FromString(header.channel_header),
            common_pb2.SignatureHeader.FromString(header.signature_header),
            chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input))


def prepared_envelope(signed: Any, result: bytes, events: bytes | None,
                      chaincode: str = CHAINCODE) -> Any:
    """The unsigned envelope a Gateway prepares from an endorsed proposal."""
    header, channel_header, _, _ = _parts(signed)
    event = b"" if events is None else chaincode_event_pb2.ChaincodeEvent(
        chaincode_id=chaincode, tx_id=channel_header.tx_id, event_name="cityunion",
        payload=events).SerializeToString()
    action = proposal_pb2.ChaincodeAction(
        events=event, response=proposal_response_pb2.Response(status=200,
                                                               payload=result))
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=hashlib.sha256(signed.proposal_bytes).digest(),
        extension=action.SerializeToString())
    action_payload = transaction_pb2.ChaincodeActionPayload(
        action=transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=response_payload.SerializeToString()))
    transaction = transaction_pb2.Transaction(actions=[
        transaction_pb2.TransactionAction(header=header.signature_header,
                                          payload=action_payload.SerializeToString())])
    payload = common_pb2.Payload(header=header, data=transaction.SerializeToString())
    return common_pb2.Envelope(payload=payload.SerializeToString())


def config_envelope() -> bytes:
    header = common_pb2.ChannelHeader(type=common_pb2.HeaderType.Value("CONFIG"),
                                      channel_id=CHANNEL)
    payload = common_pb2.Payload(header=common_pb2.Header(
        channel_header=header.SerializeToString()), data=b"config")
    return common_pb2.Envelope(payload=payload.SerializeToString()).SerializeToString()


def raw_block(number: int, envelopes: list[bytes], codes: list[int]) -> bytes:
    metadata = [b"", b"", bytes(codes), b"", b""]  # [2]: TRANSACTIONS_FILTER
    return common_pb2.Block(
        header=common_pb2.BlockHeader(number=number),
        data=common_pb2.BlockData(data=envelopes),
        metadata=common_pb2.BlockMetadata(metadata=metadata)).SerializeToString()


def domain_event(n: int) -> dict[str, Any]:
    return {"type": "DepartmentRegistered", "aggregate_id": f"agg-{n}",
            "version": 1, "timestamp": T0.isoformat(), "data": {"n": n}}


VALID = transaction_pb2.TxValidationCode.Value("VALID")
MVCC = transaction_pb2.TxValidationCode.Value("MVCC_READ_CONFLICT")


# ------------------------------------------------------------ the proposal
def test_proposal_is_built_and_signed_as_fabric_clients_do() -> None:
    identity = make_identity()
    nonce = bytes(range(24))
    args = {"code": "transport", "name": "Transport", "duties": ["transport"]}
    tx_id, signed = build_proposal(
        identity, CHANNEL, CHAINCODE,
        [b"RegisterDepartment", canonical_json(args)], {"secret": b"s"},
        nonce=nonce, timestamp=T0)

    assert tx_id == hashlib.sha256(nonce + identity.serialized).hexdigest()
    _, channel_header, signature_header, spec = _parts(signed)
    assert channel_header.type == common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
    assert (channel_header.tx_id, channel_header.channel_id) == (tx_id, CHANNEL)
    assert channel_header.timestamp.ToDatetime(tzinfo=UTC) == T0
    extension = proposal_pb2.ChaincodeHeaderExtension.FromString(
        channel_header.extension)
    assert extension.chaincode_id.name == CHAINCODE
    assert signature_header.nonce == nonce
    creator = identities_pb2.SerializedIdentity.FromString(signature_header.creator)
    assert (creator.mspid, creator.id_bytes) == ("KunshanMSP", identity.cert_pem)
    assert spec.chaincode_spec.chaincode_id.name == CHAINCODE
    # what the contract reads: args[0] the function, args[1] canonical JSON
    assert list(spec.chaincode_spec.input.args) == [
        b"RegisterDepartment",
        b'{"code":"transport","duties":["transport"],"name":"Transport"}']
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    assert dict(proposal_pb2.ChaincodeProposalPayload.FromString(
        proposal.payload).TransientMap) == {"secret": b"s"}
    check_signature(signature_header.creator, signed.proposal_bytes,
                    signed.signature)


def test_every_signature_is_low_s_and_nonces_differ() -> None:
    identity = make_identity()
    tx_ids = set()
    for _ in range(40):  # a raw ECDSA S is in the upper half about half the time
        tx_id, signed = build_proposal(identity, CHANNEL, CHAINCODE, [b"F", b"{}"])
        check_signature(identity.serialized, signed.proposal_bytes, signed.signature)
        tx_ids.add(tx_id)
    assert len(tx_ids) == 40


def test_a_tampered_proposal_does_not_verify() -> None:
    identity = make_identity()
    _, signed = build_proposal(identity, CHANNEL, CHAINCODE, [b"F", b"{}"])
    with pytest.raises(InvalidSignature):
        check_signature(identity.serialized, signed.proposal_bytes + b"x",
                        signed.signature)


def test_prepared_transaction_gives_the_response_and_the_event() -> None:
    identity = make_identity()
    _, signed = build_proposal(identity, CHANNEL, CHAINCODE, [b"F", b"{}"])
    events = canonical_json([domain_event(1)])
    envelope = prepared_envelope(signed, b'{"id":"x"}', events)
    action = chaincode_action(envelope.payload)
    assert action.response.payload == b'{"id":"x"}'
    assert chaincode_event_pb2.ChaincodeEvent.FromString(
        action.events).payload == events


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("error", [
    Conflict("department transport of Kunshan is already registered", "code"),
    InvalidArgument("duties: List should have at least 1 item", "duties"),
    NotFound("department x does not exist", "id"),
    ContractError("plain"),
])
def test_contract_errors_are_found_in_gateway_messages(error: ContractError) -> None:
    for text in (f"chaincode response {error.status}, {error.to_payload()}",
                 "evaluate call to endorser returned error: chaincode response "
                 f"{error.status}, {error.to_payload()}",
                 error.to_payload()):
        found = contract_error_in(text)
        assert type(found) is type(error)
        assert (found.message, found.field) == (error.message, error.field)


@pytest.mark.parametrize("text", [
    "", "failed to endorse transaction, see attached details for more info",
    'chaincode response 500, {"error": "NoSuchCode", "message": "m"}',
    'chaincode response 500, {"error": "Conflict"', "{not json} {}",
])
def test_other_messages_are_no_contract_error(text: str) -> None:
    assert contract_error_in(text) is None


# ------------------------------------------------------- events: positions
def _events(*payloads: list[dict[str, Any]], chaincode: str = CHAINCODE) -> list[Any]:
    return [chaincode_event_pb2.ChaincodeEvent(
        chaincode_id=chaincode, tx_id=f"tx{i}", event_name="cityunion",
        payload=canonical_json(p)) for i, p in enumerate(payloads)]


def test_positions_number_transactions_and_events_within_a_block() -> None:
    events = _events([domain_event(0), domain_event(1)], [], [domain_event(2)])
    got = list(committed_events(7, events))
    assert [(tuple(e.position), e.tx_id, e.data) for e in got] == [
        ((7, 0, 0), "tx0", {"n": 0}), ((7, 0, 1), "tx0", {"n": 1}),
        ((7, 2, 0), "tx2", {"n": 2})]
    assert got[0].type == "DepartmentRegistered"
    assert got[0].aggregate_id == "agg-0" and got[0].version == 1


def test_resuming_after_any_position_misses_and_repeats_nothing() -> None:
    blocks = [(3, _events([domain_event(0)])),
              (5, _events([domain_event(1), domain_event(2)], [], [domain_event(3)])),
              (6, _events([domain_event(4)]))]
    everything = [e for n, evs in blocks for e in committed_events(n, evs)]
    points = [None, Position(0, 0, 0), Position(5, 1, 0), Position(5, 0, 5),
              Position(9, 0, 0), *(e.position for e in everything)]
    for after in points:
        # a reader resumes from after's block and filters
        start = after.block if after else 0
        resumed = [e for n, evs in blocks if n >= start
                   for e in committed_events(n, evs, after)]
        expected = [e for e in everything if after is None or e.position > after]
        assert resumed == expected, after


def test_block_events_follow_the_gateway_rules() -> None:
    """Valid endorser transactions only, in order, this chaincode's named events."""
    identity = make_identity()

    def tx(events: bytes | None, chaincode: str = CHAINCODE) -> tuple[str, bytes]:
        tx_id, signed = build_proposal(identity, CHANNEL, CHAINCODE, [b"F", b"{}"])
        return tx_id, prepared_envelope(signed, b"{}", events,
                                        chaincode).SerializeToString()

    one = canonical_json([domain_event(1)])
    valid_a, invalid, other, silent, valid_b = (
        tx(one), tx(one), tx(one, "_lifecycle"), tx(None),
        tx(canonical_json([domain_event(2), domain_event(3)])))
    raw = raw_block(9, [config_envelope(), valid_a[1], invalid[1], other[1],
                        silent[1], valid_b[1]], [VALID, VALID, MVCC, VALID, VALID,
                                                 VALID])
    number, events = block_chaincode_events(raw, CHAINCODE)
    assert number == 9
    assert [e.tx_id for e in events] == [valid_a[0], valid_b[0]]
    got = [(tuple(e.position), e.tx_id, e.data["n"])
           for e in committed_events(number, events)]
    assert got == [((9, 0, 0), valid_a[0], 1), ((9, 1, 0), valid_b[0], 2),
                   ((9, 1, 1), valid_b[0], 3)]


# ------------------------------------------------------- the fake Gateway
def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
          *details: tuple[str, str, str]) -> None:
    """End the call as the Gateway does: a status, with ErrorDetail entries."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for address, msp_id, text in details:
        item = any_pb2.Any()
        item.Pack(gateway_pb2.ErrorDetail(address=address, msp_id=msp_id,
                                          message=text))
        status.details.append(item)
    context.abort_with_status(rpc_status.to_status(status))


Handler = Callable[[Any, grpc.ServicerContext], Any]


class FakeGateway(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    """A Gateway whose answers the test sets per call; it checks signatures.

    Endorse runs ``chaincode(function, args) -> (result, events)`` (raising a
    ContractError for a rejection); Submit commits into ``blocks``; CommitStatus
    reports ``statuses`` (default VALID); ChaincodeEvents streams ``blocks``.
    """

    def __init__(self) -> None:
        self.chaincode: Callable[[str, dict[str, Any]], tuple[dict[str, Any],
                                                                list[Any]]] = \
            lambda f, a: ({}, [])
        self.handlers: dict[str, Handler] = {}
        self.status_of: Callable[[str], int] = lambda tx_id: VALID
        self.blocks: list[tuple[int, list[Any]]] = []  # (number, chaincode events)
        self.committed: dict[str, int] = {}
        self.pending: dict[str, tuple[Any, Any]] = {}
        self.event_requests: list[Any] = []
        self.break_after: int | None = None  # responses before a stream breaks
        self.changed = threading.Condition()

    # endorse: the chaincode runs on the proposal as a peer would run it
    def _run(self, signed: Any, context: grpc.ServicerContext, code: grpc.StatusCode
             ) -> tuple[str, Any]:
        _, channel_header, signature_header, spec = _parts(signed)
        check_signature(signature_header.creator, signed.proposal_bytes,
                        signed.signature)
        assert channel_header.tx_id == hashlib.sha256(
            signature_header.nonce + signature_header.creator).hexdigest()
        args = list(spec.chaincode_spec.input.args)
        try:
            result, events = self.chaincode(args[0].decode(), json.loads(args[1]))
        except ContractError as e:
            text = f"chaincode response {e.status}, {e.to_payload()}"
            if code == grpc.StatusCode.UNKNOWN:  # Evaluate: in the message only
                abort(context, code, text)
            abort(context, code, "failed to endorse transaction, see attached "
                  "details for more info", ("peer0:7051", "KunshanMSP", text),
                  ("peer1:7051", "TaicangMSP", text))
        return channel_header.tx_id, prepared_envelope(
            signed, canonical_json(result),
            canonical_json(events) if events is not None else None)

    def Evaluate(self, request: Any, context: grpc.ServicerContext) -> Any:
        if "Evaluate" in self.handlers:
            return self.handlers["Evaluate"](request, context)
        _, envelope = self._run(request.proposed_transaction, context,
                                grpc.StatusCode.UNKNOWN)
        return gateway_pb2.EvaluateResponse(result=chaincode_action(
            envelope.payload).response)

    def Endorse(self, request: Any, context: grpc.ServicerContext) -> Any:
        if "Endorse" in self.handlers:
            return self.handlers["Endorse"](request, context)
        tx_id, envelope = self._run(request.proposed_transaction, context,
                                    grpc.StatusCode.ABORTED)
        assert request.transaction_id == tx_id
        assert request.channel_id == CHANNEL
        return gateway_pb2.EndorseResponse(prepared_transaction=envelope)

    def Submit(self, request: Any, context: grpc.ServicerContext) -> Any:
        if "Submit" in self.handlers:
            return self.handlers["Submit"](request, context)
        envelope = request.prepared_transaction
        payload = common_pb2.Payload.FromString(envelope.payload)
        creator = common_pb2.SignatureHeader.FromString(
            payload.header.signature_header).creator
        check_signature(creator, envelope.payload, envelope.signature)
        action = chaincode_action(envelope.payload)
        with self.changed:
            code = self.status_of(request.transaction_id)
            number = len(self.blocks)
            events = [chaincode_event_pb2.ChaincodeEvent.FromString(action.events)] \
                if code == VALID and action.events else []
            self.blocks.append((number, events))
            self.committed[request.transaction_id] = number
            self.changed.notify_all()
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        inner = gateway_pb2.CommitStatusRequest.FromString(request.request)
        check_signature(inner.identity, request.request, request.signature)
        with self.changed:
            assert self.changed.wait_for(
                lambda: inner.transaction_id in self.committed, WAIT)
            return gateway_pb2.CommitStatusResponse(
                result=self.status_of(inner.transaction_id),
                block_number=self.committed[inner.transaction_id])

    def ChaincodeEvents(self, request: Any, context: grpc.ServicerContext
                        ) -> Iterator[Any]:
        if "ChaincodeEvents" in self.handlers:
            yield from self.handlers["ChaincodeEvents"](request, context)
            return
        inner = gateway_pb2.ChaincodeEventsRequest.FromString(request.request)
        check_signature(inner.identity, request.request, request.signature)
        with self.changed:
            self.event_requests.append(inner)
            self.changed.notify_all()
        number, sent = inner.start_position.specified.number, 0
        while context.is_active():
            with self.changed:
                if number >= len(self.blocks):
                    self.changed.wait(0.2)
                    continue
                block, events = self.blocks[number]
            number += 1
            if not events:
                continue
            if self.break_after is not None and sent == self.break_after:
                self.break_after = None
                abort(context, grpc.StatusCode.UNAVAILABLE, "peer restarting")
            sent += 1
            yield gateway_pb2.ChaincodeEventsResponse(block_number=block,
                                                      events=events)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _certificate(key, "peer0.kunshan.cityunion.example", "127.0.0.1"), \
        _pem_key(key)


@pytest.fixture
def fake(tmp_path: Path, tls: tuple[bytes, bytes]
         ) -> Iterator[tuple[FakeGateway, FabricNetwork]]:
    """A FakeGateway on a TLS port and the network.json + wallet that name it."""
    from concurrent.futures import ThreadPoolExecutor

    gateway = FakeGateway()
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    gateway_pb2_grpc.add_GatewayServicer_to_server(gateway, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(tls[1], tls[0])]))
    server.start()
    (tmp_path / "tlsca.pem").write_bytes(tls[0])
    identity = make_identity()
    user = tmp_path / "wallet" / "Kunshan" / "admin"
    user.mkdir(parents=True)
    (user / "cert.pem").write_bytes(identity.cert_pem)
    (user / "key.pem").write_bytes(identity.key_pem)
    (user / "identity.json").write_text(json.dumps({
        "msp_id": "KunshanMSP", "name": "admin@kunshan", "role": "city_admin",
        "department": None}))
    peer = {"msp_id": "KunshanMSP", "address": f"127.0.0.1:{port}",
            "tls_root": str(tmp_path / "tlsca.pem"),
            "host": "peer0.kunshan.cityunion.example"}
    (tmp_path / "network.json").write_text(json.dumps({
        "channel": CHANNEL, "chaincode": CHAINCODE, "peers": {"Kunshan": peer},
        "orderers": [], "wallet": str(tmp_path / "wallet")}))
    network = FabricNetwork.load(tmp_path)
    yield gateway, network
    network.close()
    server.stop(grace=None)


def _ledger(network: FabricNetwork) -> FabricLedger:
    return FabricLedger(network, network.identity("Kunshan", "admin"))


def test_network_description_and_wallet_are_read(
        fake: tuple[FakeGateway, FabricNetwork], tmp_path: Path) -> None:
    _, network = fake
    assert network.channel == CHANNEL and network.chaincode == CHAINCODE
    assert network.org_of("KunshanMSP") == "Kunshan"
    with pytest.raises(ValueError, match="users of Kunshan: admin"):
        network.identity("Kunshan", "nobody")
    with pytest.raises(ValueError, match="accepted: Kunshan"):
        FabricLedger(network, network.identity("Kunshan", "admin"), "Shanghai")
    with pytest.raises(ValueError, match="network up"):
        FabricNetwork.load(tmp_path / "elsewhere")


def test_submit_endorses_signs_submits_and_waits_for_the_commit(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    gateway.chaincode = lambda f, a: ({"id": "d1", "f": f}, [domain_event(1)])
    receipt = _ledger(network).submit("RegisterDepartment", {"code": "transport"})
    assert (receipt.block_number, receipt.status) == (0, "VALID")
    assert receipt.result == {"id": "d1", "f": "RegisterDepartment"}
    assert receipt.events == [domain_event(1)]
    assert gateway.committed == {receipt.tx_id: 0}


def test_submit_async_keeps_a_window_in_flight(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    gateway.chaincode = lambda f, a: (a, [])
    ledger = _ledger(network)
    futures = [ledger.submit_async("F", {"n": n}) for n in range(20)]
    receipts = [f.result(WAIT) for f in futures]
    assert [r.result["n"] for r in receipts] == list(range(20))
    assert sorted(r.block_number for r in receipts) == list(range(20))


def test_an_invalid_commit_raises_commit_error_with_its_status(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    gateway.status_of = lambda tx_id: MVCC
    with pytest.raises(CommitError) as caught:
        _ledger(network).submit("F", {})
    assert caught.value.status == "MVCC_READ_CONFLICT"
    assert caught.value.tx_id in gateway.committed


@pytest.mark.parametrize("error", [
    Conflict("department transport of Kunshan is already registered", "code"),
    InvalidArgument("duties: List should have at least 1 item", "duties"),
    NotFound("department x does not exist", "id"),
])
def test_contract_rejections_come_back_typed(
        fake: tuple[FakeGateway, FabricNetwork], error: ContractError) -> None:
    gateway, network = fake

    def reject(f: str, a: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        raise error

    gateway.chaincode = reject
    ledger = _ledger(network)
    for call in (ledger.submit, ledger.evaluate, ledger.submit_async):
        with pytest.raises(ContractError) as caught:
            call("RegisterDepartment", {})
        assert type(caught.value) is type(error)
        assert (caught.value.message, caught.value.field) == (error.message,
                                                              error.field)
    assert gateway.committed == {}


def test_other_failures_carry_the_tx_id_and_the_peers_messages(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    ledger = _ledger(network)

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, grpc.StatusCode.ABORTED, "failed to endorse transaction",
              ("peer0:7051", "KunshanMSP", "access denied: creator org unknown"))

    gateway.handlers["Endorse"] = refuse
    with pytest.raises(EndorseError) as endorse:
        ledger.submit("F", {})
    assert endorse.value.tx_id and len(endorse.value.tx_id) == 64
    assert "access denied: creator org unknown" in str(endorse.value)
    assert "KunshanMSP" in str(endorse.value)

    del gateway.handlers["Endorse"]

    def unavailable(request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, grpc.StatusCode.UNAVAILABLE, "no orderer reachable",
              ("orderer0:7050", "CenterMSP", "connection refused"))

    gateway.handlers["Submit"] = unavailable
    with pytest.raises(SubmitError) as submit:
        ledger.submit("F", {})
    assert submit.value.tx_id and "connection refused" in str(submit.value)
    assert "UNAVAILABLE" in str(submit.value)


def test_gateway_failure_reads_status_details() -> None:
    class Call(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def __init__(self, status: Any) -> None:
            self.status = status

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.ABORTED

        def details(self) -> str:
            return str(self.status.message)

        def trailing_metadata(self) -> Any:
            return (("grpc-status-details-bin", self.status.SerializeToString()),)

        def initial_metadata(self) -> Any:
            return ()

        def is_active(self) -> bool:
            return False

        def time_remaining(self) -> float | None:
            return None

        def cancel(self) -> bool:
            return False

        def add_callback(self, callback: Any) -> bool:
            return False

    detail = any_pb2.Any()
    text = f"chaincode response 409, {Conflict('dup', 'code').to_payload()}"
    detail.Pack(gateway_pb2.ErrorDetail(address="p:1", msp_id="M", message=text))
    status = status_pb2.Status(code=grpc.StatusCode.ABORTED.value[0],
                               message="failed to endorse", details=[detail])
    failure = GatewayFailure.of(Call(status))
    assert failure.code == "ABORTED" and failure.details == (("p:1", "M", text),)
    found = failure.contract_error()
    assert isinstance(found, Conflict) and found.field == "code"


def test_height_and_history_come_from_qscc_and_key_history(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    ledger = _ledger(network)
    other = make_identity("TaicangMSP", "admin@taicang")
    txs = {}  # tx_id -> (envelope bytes, block bytes)
    for number, who in ((4, ledger.identity), (7, other)):
        tx_id, signed = build_proposal(who, CHANNEL, CHAINCODE, [b"F", b"{}"])
        envelope = prepared_envelope(signed, b"{}", None).SerializeToString()
        txs[tx_id] = envelope, raw_block(number, [config_envelope(), envelope],
                                         [VALID, VALID])
    first, second = list(txs)

    def evaluate(request: Any, context: grpc.ServicerContext) -> Any:
        _, _, _, spec = _parts(request.proposed_transaction)
        assert list(request.target_organizations) == ["KunshanMSP"]
        name, args = spec.chaincode_spec.chaincode_id.name, \
            list(spec.chaincode_spec.input.args)
        if name == CHAINCODE:
            assert args == [b"KeyHistory", b'{"key":"a~1"}']
            history = [{"tx_id": t, "timestamp": T0.isoformat(), "value": v,
                        "is_delete": v is None}
                       for t, v in ((second, None), (first, "{}"))]  # newest first
            payload = canonical_json({"key": "a~1", "history": history})
        elif args[0] == b"GetChainInfo":
            assert args[1] == CHANNEL.encode()
            payload = ledger_pb2.BlockchainInfo(height=8).SerializeToString()
        elif args[0] == b"GetTransactionByID":
            payload = transaction_pb2.ProcessedTransaction(
                transactionEnvelope=common_pb2.Envelope.FromString(
                    txs[args[2].decode()][0]),
                validationCode=VALID).SerializeToString()
        else:
            assert args[0] == b"GetBlockByTxID"
            payload = txs[args[2].decode()][1]
        return gateway_pb2.EvaluateResponse(
            result=proposal_response_pb2.Response(status=200, payload=payload))

    gateway.handlers["Evaluate"] = evaluate
    assert ledger.height() == 8
    versions = ledger.history("a~1")
    assert [(v.block_number, v.tx_index, v.tx_id, v.creator, v.value, v.is_delete)
            for v in versions] == [
        (4, 1, first, "KunshanMSP:admin@kunshan", "{}", False),
        (7, 1, second, "TaicangMSP:admin@taicang", None, True)]


def test_following_events_survives_a_broken_stream(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    ledger = _ledger(network)
    ledger.retry_min = 0.05
    counter = iter(range(1000))
    gateway.chaincode = lambda f, a: ({}, [domain_event(next(counter))
                                           for _ in range(a["events"])])
    for n in (1, 0, 2, 1):  # block 1 has a transaction with no domain events
        ledger.submit("F", {"events": n})
    gateway.break_after = 2  # the peer goes away after two responses
    seen: queue.Queue[Any] = queue.Queue()

    def follow(after: Position | None) -> None:
        for event in ledger.events(after=after, follow=True):
            seen.put(event)

    threading.Thread(target=follow, args=(None,), daemon=True).start()
    got = [seen.get(timeout=WAIT) for _ in range(4)]
    assert [tuple(e.position) for e in got] == [(0, 0, 0), (2, 0, 0), (2, 0, 1),
                                                (3, 0, 0)]
    assert [e.data["n"] for e in got] == [0, 1, 2, 3]
    # the reconnect started after the last block read, not from the beginning
    assert [r.start_position.specified.number for r in gateway.event_requests] \
        == [0, 2]
    ledger.submit("F", {"events": 1})  # live events keep coming
    assert tuple(seen.get(timeout=WAIT).position) == (4, 0, 0)
    assert seen.empty()

    # resuming after a checkpoint: starts at its block, skips what it covers
    threading.Thread(target=follow, args=(Position(2, 0, 0),), daemon=True).start()
    assert [tuple(seen.get(timeout=WAIT).position) for _ in range(3)] == [
        (2, 0, 1), (3, 0, 0), (4, 0, 0)]
    assert gateway.event_requests[-1].start_position.specified.number == 2


def test_a_refused_event_stream_raises(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake

    def refuse(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        abort(context, grpc.StatusCode.PERMISSION_DENIED, "not a reader")
        yield from ()

    gateway.handlers["ChaincodeEvents"] = refuse
    with pytest.raises(LedgerError, match="not a reader"):
        next(iter(_ledger(network).events(follow=True)))


def test_closing_the_network_ends_a_follower(
        fake: tuple[FakeGateway, FabricNetwork]) -> None:
    gateway, network = fake
    ledger = _ledger(network)
    done = threading.Event()

    def follow() -> None:
        for _ in ledger.events(follow=True):
            pass
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    with gateway.changed:  # the stream is open
        gateway.changed.wait_for(lambda: bool(gateway.event_requests), WAIT)
    network.close()
    assert done.wait(WAIT)


# ------------------------------------------------- the KeyHistory query itself
def test_key_history_query_lists_versions_on_the_embedded_ledger(ids: Any) -> None:
    """The contract's KeyHistory (which the Fabric client completes from qscc)
    gives the same versions as the embedded ledger's own history."""
    admin = ids("Kunshan", "admin")
    receipt = admin.submit("RegisterDepartment", {"code": "transport",
                                                  "name": "Transport",
                                                  "duties": ["transport"]})
    key = f"a~{receipt.result['id']}"
    found = admin.evaluate("KeyHistory", {"key": key})
    own = admin.history(key)
    assert found["key"] == key
    assert [(v["tx_id"], v["value"], v["is_delete"], v["timestamp"])
            for v in found["history"]] == [
        (v.tx_id, v.value, v.is_delete, v.timestamp) for v in own]
    assert found["history"][0]["tx_id"] == receipt.tx_id
    assert admin.evaluate("KeyHistory", {"key": "no-such-key"})["history"] == []
    with pytest.raises(InvalidArgument) as caught:
        admin.evaluate("KeyHistory", {"key": ""})
    assert caught.value.field == "key"
