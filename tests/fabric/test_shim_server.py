"""The chaincode-as-a-service server, driven by a peer played over real gRPC.

``FakePeer`` speaks the peer's side of the shim protocol as Fabric v3.1's
``core/chaincode/handler.go`` does: it checks REGISTER, sends REGISTERED and READY
(optionally offering WRITE_BATCH_STATE / GET_STATE_MULTIPLE), sends TRANSACTIONs
with signed-proposal structure built from X.509 identities carrying Fabric CA
attributes, and serves state requests from a dict with query pages of 100.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("CI"):  # in CI a missing extra is a failure, not a skip
    pytest.importorskip("grpc")
    pytest.importorskip("fabric_protos")

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2
from fabric_protos.ledger.queryresult import kv_query_result_pb2 as kvq
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    chaincode_shim_pb2,
    chaincode_shim_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
)
from google.protobuf.timestamp_pb2 import Timestamp

from chaincode import contract
from chaincode.errors import ContractError
from chaincode.server import serve
from chaincode.stub import Creator, KeyModification, Stub

Msg = chaincode_shim_pb2.ChaincodeMessage
T = Msg.Type
PACKAGE_ID = "cityunion_1:" + "0f1e2d3c4b5a6978" * 4
CHANNEL = "cityunion"
PAGE = 100  # the peer's maxResultLimit for one QueryResponse
WAIT = 10.0  # seconds; every wait is on a queue, this only bounds a failure
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------- identities
_CERTS: dict[tuple[str, ...], bytes] = {}


def certificate(role: str, department: str | None = None) -> bytes:
    """A self-signed P-256 X.509 PEM with the Fabric CA attribute extension."""
    key = (role, department or "")
    if key not in _CERTS:
        attrs = {"cityunion.role": role}
        if department:
            attrs["cityunion.department"] = department
        sk = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{role}-user")])
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5.6.7.8.1"),
                                         json.dumps({"attrs": attrs}).encode())
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(sk.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(T0 - timedelta(days=1))
                .not_valid_after(T0 + timedelta(days=365))
                .add_extension(ext, critical=False).sign(sk, hashes.SHA256()))
        _CERTS[key] = cert.public_bytes(serialization.Encoding.PEM)
    return _CERTS[key]


def signed_proposal(txid: str, msp: str, cert: bytes, when: datetime,
                    args: list[bytes], transient: dict[str, bytes] | None = None,
                    channel: str = CHANNEL) -> Any:
    ts = Timestamp()
    ts.FromDatetime(when)
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION, channel_id=channel, tx_id=txid,
        timestamp=ts)
    creator = identities_pb2.SerializedIdentity(mspid=msp, id_bytes=cert)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(
            creator=creator.SerializeToString(), nonce=b"n" * 24).SerializeToString())
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name="cityunion"),
            input=chaincode_pb2.ChaincodeInput(args=args)))
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=spec.SerializeToString(), TransientMap=transient or {})
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(),
                                     payload=payload.SerializeToString())
    return proposal_pb2.SignedProposal(proposal_bytes=proposal.SerializeToString(),
                                       signature=b"not checked by the chaincode")


# ------------------------------------------------------------ the fake peer
class FakePeer:
    """The peer's end of one Connect stream, with an in-memory world state."""

    def __init__(self, port: int, state: dict[str, bytes] | None = None, *,
                 write_batch: int = 0, multi_get: int = 0) -> None:
        self.state = state if state is not None else {}
        self.write_batch, self.multi_get = write_batch, multi_get
        self.history: dict[str, list[Any]] = {}
        self.requests: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        self.writes: dict[tuple[str, str], dict[str, bytes | None]] = {}
        self.results: dict[tuple[str, str], queue.Queue[Any]] = {}
        self.control: queue.Queue[Any] = queue.Queue()  # REGISTER, KEEPALIVE, ERROR
        self.held: set[tuple[str, str]] = set()
        self.parked: dict[tuple[str, str], Any] = {}
        self.arrived: queue.Queue[tuple[str, str]] = queue.Queue()
        self.refuse: set[str] = set()  # keys whose GET_STATE the peer answers ERROR
        self.iterators: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()
        self._out: queue.Queue[Any] = queue.Queue()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.call = chaincode_shim_pb2_grpc.ChaincodeStub(self.channel).Connect(
            iter(self._out.get, None))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        register = self.control.get(timeout=WAIT)
        assert register.type == T.REGISTER
        assert chaincode_pb2.ChaincodeID.FromString(register.payload).name == PACKAGE_ID
        self.send(Msg(type=T.REGISTERED))
        params = chaincode_pb2.ChaincodeAdditionalParams(
            use_write_batch=bool(write_batch), max_size_write_batch=write_batch,
            use_get_multiple_keys=bool(multi_get), max_size_get_multiple_keys=multi_get)
        self.send(Msg(type=T.READY, payload=params.SerializeToString()))

    def send(self, msg: Any) -> None:
        self._out.put(msg)

    def close(self) -> None:
        self._out.put(None)
        self.channel.close()

    def _read(self) -> None:
        try:
            for msg in self.call:
                key = (msg.channel_id, msg.txid)
                if msg.type in (T.COMPLETED, T.ERROR) and key in self.results:
                    self.results[key].put(msg)
                elif msg.type in (T.REGISTER, T.KEEPALIVE, T.ERROR):
                    self.control.put(msg)
                else:
                    with self.lock:
                        held = key in self.held
                        if held:
                            self.parked[key] = msg
                    self.arrived.put(key)
                    if not held:
                        self.send(self.serve(msg))
        except grpc.RpcError:
            pass

    # --- the peer's handler for state requests (core/chaincode/handler.go)
    def serve(self, msg: Any) -> Any:
        key = (msg.channel_id, msg.txid)
        name = T.Name(msg.type)
        kind = getattr(chaincode_shim_pb2, {
            "GET_STATE": "GetState", "GET_STATE_MULTIPLE": "GetStateMultiple",
            "PUT_STATE": "PutState", "DEL_STATE": "DelState",
            "WRITE_BATCH_STATE": "WriteBatchState",
            "GET_STATE_BY_RANGE": "GetStateByRange",
            "QUERY_STATE_NEXT": "QueryStateNext",
            "QUERY_STATE_CLOSE": "QueryStateClose",
            "GET_HISTORY_FOR_KEY": "GetHistoryForKey"}[name])
        req = kind.FromString(msg.payload)
        self.requests.setdefault(key, []).append((name, req))
        writes = self.writes.setdefault(key, {})
        payload = b""
        if name == "GET_STATE":
            if req.key in self.refuse:
                return Msg(type=T.ERROR, payload=b"GET_STATE failed: no ledger context",
                           txid=msg.txid, channel_id=msg.channel_id)
            payload = self.state.get(req.key, b"")
        elif name == "GET_STATE_MULTIPLE":
            payload = chaincode_shim_pb2.GetStateMultipleResult(
                values=[self.state.get(k, b"") for k in req.keys]).SerializeToString()
        elif name == "PUT_STATE":
            writes[req.key] = req.value
        elif name == "DEL_STATE":
            writes[req.key] = None
        elif name == "WRITE_BATCH_STATE":
            for rec in req.rec:
                put = rec.type == chaincode_shim_pb2.WriteRecord.PUT_STATE
                writes[rec.key] = rec.value if put else None
        elif name == "GET_STATE_BY_RANGE":
            keys = sorted(k for k in self.state if req.startKey <= k
                          and (not req.endKey or k < req.endKey))
            rows = [kvq.KV(namespace="cityunion", key=k, value=self.state[k])
                    .SerializeToString() for k in keys]
            payload = self._page(f"{msg.txid}-{len(self.iterators)}", rows)
        elif name == "GET_HISTORY_FOR_KEY":
            rows = [m.SerializeToString() for m in self.history.get(req.key, [])]
            payload = self._page(f"{msg.txid}-{len(self.iterators)}", rows)
        elif name == "QUERY_STATE_NEXT":
            payload = self._page(req.id, self.iterators.pop(req.id))
        elif name == "QUERY_STATE_CLOSE":
            self.iterators.pop(req.id, None)
            payload = chaincode_shim_pb2.QueryResponse(id=req.id).SerializeToString()
        return Msg(type=T.RESPONSE, payload=payload, txid=msg.txid,
                   channel_id=msg.channel_id)

    def _page(self, iter_id: str, rows: list[bytes]) -> bytes:
        more = len(rows) > PAGE
        if more:
            self.iterators[iter_id] = rows[PAGE:]
        return chaincode_shim_pb2.QueryResponse(
            results=[chaincode_shim_pb2.QueryResultBytes(resultBytes=r)
                     for r in rows[:PAGE]], has_more=more, id=iter_id
        ).SerializeToString()

    # --- transactions
    def hold(self, txid: str, channel: str = CHANNEL) -> None:
        """Answer nothing of this transaction until ``release``."""
        with self.lock:
            self.held.add((channel, txid))

    def release(self, txid: str, channel: str = CHANNEL) -> None:
        with self.lock:
            self.held.discard((channel, txid))
            parked = self.parked.pop((channel, txid), None)
        if parked is not None:
            self.send(self.serve(parked))

    def start(self, txid: str, function: str, args: dict[str, Any] | bytes,
              msp: str = "KunshanMSP", cert: bytes | None = None,
              when: datetime = T0, channel: str = CHANNEL,
              transient: dict[str, bytes] | None = None, init: bool = False) -> None:
        raw = args if isinstance(args, bytes) else json.dumps(args).encode()
        argv = [function.encode(), raw]
        self.results[(channel, txid)] = queue.Queue()
        self.send(Msg(type=T.INIT if init else T.TRANSACTION, txid=txid,
                      channel_id=channel,
                      payload=chaincode_pb2.ChaincodeInput(args=argv).SerializeToString(),
                      proposal=signed_proposal(txid, msp, cert or certificate(
                          "city_admin"), when, argv, transient, channel)))

    def result(self, txid: str, channel: str = CHANNEL) -> Any:
        return self.results[(channel, txid)].get(timeout=WAIT)

    def commit(self, txid: str, channel: str = CHANNEL) -> None:
        """Apply a transaction's writes, as a block commit would."""
        for k, v in self.writes.get((channel, txid), {}).items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v

    def run(self, txid: str, function: str, args: dict[str, Any] | bytes,
            **kw: Any) -> tuple[Any, Any]:
        """Run a transaction to its end; returns the message and its Response."""
        self.start(txid, function, args, **kw)
        msg = self.result(txid, kw.get("channel", CHANNEL))
        assert msg.type == T.COMPLETED, msg
        response = proposal_response_pb2.Response.FromString(msg.payload)
        if response.status == 200:
            self.commit(txid, kw.get("channel", CHANNEL))
        return msg, response


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    srv, port = serve("127.0.0.1:0", PACKAGE_ID, invoke=_invoke)
    yield port
    srv.stop(grace=None)


_CUSTOM: dict[str, Callable[[Stub], bytes]] = {}


def _invoke(stub: Stub) -> bytes:
    """The contract, plus test functions that exercise the stub directly."""
    fn = _CUSTOM.get(stub.get_args()[0].decode())
    return fn(stub) if fn else contract.invoke(stub)


@pytest.fixture(params=[(0, 0), (1000, 1000)], ids=["plain", "batched"])
def peer(request: pytest.FixtureRequest, server: int) -> Iterator[FakePeer]:
    """A connected peer, without and with WRITE_BATCH_STATE / GET_STATE_MULTIPLE."""
    p = FakePeer(server, write_batch=request.param[0], multi_get=request.param[1])
    yield p
    p.close()


# -------------------------------------------------------- the same on a dict
class DictStub:
    """The Stub on a plain dict: the reference write set for determinism."""

    def __init__(self, state: dict[str, bytes], txid: str, msp: str, cert: bytes,
                 when: datetime, args: list[bytes]) -> None:
        self.state, self.txid, self.when, self.args = state, txid, when, args
        self.creator = Creator(msp, cert)
        self.writes: dict[str, bytes | None] = {}
        self.event: tuple[str, bytes] | None = None

    def get_args(self) -> list[bytes]:
        return self.args

    def get_state(self, key: str) -> bytes | None:
        return self.state.get(key)

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        return [self.state.get(k) for k in keys]

    def put_state(self, key: str, value: bytes) -> None:
        self.writes[key] = value

    def del_state(self, key: str) -> None:
        self.writes[key] = None

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        return iter([(k, self.state[k]) for k in sorted(self.state)
                     if start <= k < end])

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        return iter([])

    def get_creator(self) -> Creator:
        return self.creator

    def get_tx_id(self) -> str:
        return self.txid

    def get_tx_timestamp(self) -> datetime:
        return self.when

    def get_transient(self) -> dict[str, bytes]:
        return {}

    def set_event(self, name: str, payload: bytes) -> None:
        self.event = (name, payload)


# -------------------------------------------------------------------- tests
DEPT: dict[str, Any] = {"code": "transport", "name": "Transport bureau",
                        "duties": ["bus"]}
SCHEME: dict[str, Any] = {"application_name": "metro-qr", "code_type": "bus",
                          "scope": "kunshan", "data_sharing_commitment": True}


def test_full_command_flow_matches_the_reference_write_set(peer: FakePeer) -> None:
    reference: dict[str, bytes] = {}
    steps: list[tuple[str, str, dict[str, Any] | None, bytes]] = [
        ("t1", "RegisterDepartment", DEPT, certificate("city_admin")),
        ("t2", "ApplyCodeScheme", SCHEME, certificate("department", "transport")),
        ("t3", "ApproveCodeScheme", None, certificate("city_admin"))]
    scheme_id = None
    for i, (txid, function, args, cert) in enumerate(steps):
        args = args if args is not None else {"scheme_id": scheme_id}
        when = T0 + timedelta(minutes=i, microseconds=123456)
        msg, response = peer.run(txid, function, args, cert=cert, when=when)
        assert response.status == 200, response.message
        result = json.loads(response.payload)
        scheme_id = result["id"] if function == "ApplyCodeScheme" else scheme_id

        argv = [function.encode(), json.dumps(args).encode()]
        ref = DictStub(dict(reference), txid, "KunshanMSP", cert, when, argv)
        assert contract.invoke(ref) == response.payload
        assert peer.writes[(CHANNEL, txid)] == ref.writes and ref.writes
        assert ref.event is not None
        assert msg.chaincode_event.event_name == ref.event[0] == "cityunion"
        assert msg.chaincode_event.payload == ref.event[1]
        assert msg.chaincode_event.tx_id == txid
        reference.update({k: v for k, v in ref.writes.items() if v is not None})
    assert json.loads(response.payload)["status"] == "approved"
    assert peer.state == reference
    kinds = {name for name, _ in peer.requests[(CHANNEL, "t3")]}
    assert ("WRITE_BATCH_STATE" in kinds) == bool(peer.write_batch)
    assert ("PUT_STATE" in kinds) == (not peer.write_batch)


def test_rejected_command_is_a_typed_error_with_no_writes(peer: FakePeer) -> None:
    msg, response = peer.run("r1", "ApplyCodeScheme", SCHEME,
                             cert=certificate("department", "nowhere"))
    assert response.status == 403
    assert json.loads(response.message) == {
        "error": "Unauthorized",
        "message": "department nowhere is not registered in Kunshan"}
    assert not peer.writes.get((CHANNEL, "r1"))
    assert not msg.HasField("chaincode_event")

    _, response = peer.run("r2", "RegisterDepartment", {**DEPT, "duties": []})
    body = json.loads(response.message)
    assert (response.status, body["error"], body["field"]) == (400, "InvalidArgument",
                                                               "duties")


def test_unknown_function_names_the_accepted_ones(peer: FakePeer) -> None:
    _, response = peer.run("u1", "Transfer", {})
    body = json.loads(response.message)
    assert response.status == 400 and body["error"] == "InvalidArgument"
    assert "unknown function 'Transfer'" in body["message"]
    for name in ("RegisterDepartment", "ApplyCodeScheme", "GetBatch"):
        assert name in body["message"]


def test_two_transactions_interleave_on_one_stream(peer: FakePeer) -> None:
    """Same txid on two channels: replies are routed by channel_id + txid."""
    peer.hold("same", "c1")
    peer.start("same", "RegisterDepartment", DEPT, channel="c1")
    assert peer.arrived.get(timeout=WAIT) == ("c1", "same")  # c1 waits for GET_STATE
    _, response = peer.run("same", "RegisterDepartment", {**DEPT, "code": "health"},
                           channel="c2")
    assert response.status == 200 and peer.results[("c1", "same")].empty()
    peer.release("same", "c1")
    first = peer.result("same", "c1")
    assert first.type == T.COMPLETED and first.channel_id == "c1"
    assert json.loads(proposal_response_pb2.Response.FromString(first.payload)
                      .payload)["id"] != json.loads(response.payload)["id"]


def test_many_concurrent_transactions_on_one_stream(peer: FakePeer) -> None:
    txids = [f"m{i:02d}" for i in range(24)]
    for i, txid in enumerate(txids):
        peer.start(txid, "RegisterDepartment", {**DEPT, "code": f"dept{i}"},
                   when=T0 + timedelta(seconds=i))
    replies = [peer.result(txid) for txid in txids]
    responses = [proposal_response_pb2.Response.FromString(r.payload)
                 for r in replies]
    assert {(r.type, p.status) for r, p in zip(replies, responses,
                                               strict=True)} == {(T.COMPLETED, 200)}
    assert [r.txid for r in replies] == txids
    assert len({json.loads(p.payload)["id"] for p in responses}) == len(txids)


def test_two_peers_connected_at_once(server: int) -> None:
    a, b = FakePeer(server), FakePeer(server, write_batch=100)
    try:
        a.hold("pa")
        a.start("pa", "RegisterDepartment", DEPT)
        a.arrived.get(timeout=WAIT)
        _, rb = b.run("pb", "RegisterDepartment", DEPT)  # b's own world state
        assert rb.status == 200
        a.release("pa")
        assert a.result("pa").type == T.COMPLETED
        assert a.writes[(CHANNEL, "pa")] == b.writes[(CHANNEL, "pb")]  # same time
    finally:
        a.close()
        b.close()


def test_keepalive_is_echoed(peer: FakePeer) -> None:
    peer.send(Msg(type=T.KEEPALIVE, txid="ka"))
    echo = peer.control.get(timeout=WAIT)
    assert (echo.type, echo.txid) == (T.KEEPALIVE, "ka")


def test_range_pages_history_transient_and_multiple_states(peer: FakePeer) -> None:
    for i in range(250):
        peer.state[f"k~{i:04d}"] = f"v{i}".encode()
    peer.history["k~0001"] = [
        kvq.KeyModification(tx_id=f"tx{j}", value=b"" if j == 2 else b"x",
                            timestamp=Timestamp(seconds=1_790_000_000 + j,
                                                nanos=5_000),
                            is_delete=j == 2) for j in range(3)]
    seen: dict[str, Any] = {}

    def probe(stub: Stub) -> bytes:
        seen["range"] = list(stub.get_state_by_range("k~", "k~\x7f"))
        for n, _ in enumerate(stub.get_state_by_range("", "k~\x7f")):
            if n == 149:
                break  # abandoned on the second page: QUERY_STATE_CLOSE
        seen["history"] = list(stub.get_history_for_key("k~0001"))
        seen["multi"] = stub.get_multiple_states(["k~0003", "missing", "k~0249"])
        seen["transient"] = stub.get_transient()
        seen["creator"] = stub.get_creator()
        seen["time"] = stub.get_tx_timestamp()
        stub.put_state("out", b"1")
        stub.del_state("k~0000")
        stub.set_event("first", b"1")
        stub.set_event("last", b"2")
        return b"done"

    _CUSTOM["Probe"] = probe
    cert = certificate("auditor")
    msg, response = peer.run("p1", "Probe", b"", msp="CenterMSP", cert=cert,
                             transient={"key": b"secret"})
    assert (response.status, response.payload) == (200, b"done")
    assert seen["range"] == [(f"k~{i:04d}", f"v{i}".encode()) for i in range(250)]
    assert [m.is_delete for m in seen["history"]] == [False, False, True]
    assert seen["history"][0] == KeyModification(
        "tx0", b"x", datetime.fromtimestamp(1_790_000_000, UTC).replace(
            microsecond=5), False)
    assert seen["multi"] == [b"v3", None, b"v249"]
    assert seen["transient"] == {"key": b"secret"}
    assert seen["creator"] == Creator("CenterMSP", cert)
    assert seen["time"] == T0 and seen["time"].tzinfo is not None
    assert peer.writes[(CHANNEL, "p1")] == {"out": b"1", "k~0000": None}
    assert (msg.chaincode_event.event_name, msg.chaincode_event.payload) == (
        "last", b"2")

    requests = peer.requests[(CHANNEL, "p1")]
    names = [name for name, _ in requests]
    ranges = [r for name, r in requests if name == "GET_STATE_BY_RANGE"]
    assert [r.startKey for r in ranges] == ["k~", "\x01"]
    assert names.count("QUERY_STATE_NEXT") == 3  # 250 keys = pages of 100, 100, 50
    closes = [r.id for name, r in requests if name == "QUERY_STATE_CLOSE"]
    assert len(closes) == 1 and closes[0] not in peer.iterators
    multi = [r.keys for name, r in requests if name == "GET_STATE_MULTIPLE"]
    gets = [r.key for name, r in requests if name == "GET_STATE"]
    keys = ["k~0003", "missing", "k~0249"]
    assert (multi, gets) == (([keys], []) if peer.multi_get else ([], keys))


def test_failures_are_error_messages(peer: FakePeer) -> None:
    def boom(stub: Stub) -> bytes:
        raise RuntimeError("disk on fire")

    def refused(stub: Stub) -> bytes:
        stub.get_state("forbidden")
        return b""

    _CUSTOM.update(Boom=boom, Refused=refused)
    peer.refuse.add("forbidden")
    peer.start("e1", "Boom", b"")
    peer.start("e2", "Refused", b"")
    first, second = peer.result("e1"), peer.result("e2")
    assert (first.type, first.payload) == (T.ERROR, b"RuntimeError: disk on fire")
    assert second.type == T.ERROR and b"no ledger context" in second.payload
    # INIT: a Response of status >= 500 becomes an ERROR message (Go shim handleInit)
    peer.start("i1", "Transfer", {}, init=True)
    assert peer.result("i1").type == T.COMPLETED  # 400 is not >= 500

    class Unavailable(ContractError):
        status = 503

    def fatal(stub: Stub) -> bytes:
        raise Unavailable("not now")

    _CUSTOM["Fatal"] = fatal
    peer.start("i2", "Fatal", b"", init=True)
    error = peer.result("i2")
    assert error.type == T.ERROR and json.loads(error.payload)["message"] == "not now"
    _, response = peer.run("i3", "Fatal", b"")  # a TRANSACTION keeps the Response
    assert response.status == 503


def test_unexpected_message_ends_the_stream(server: int) -> None:
    p = FakePeer(server)
    try:
        p.send(Msg(type=T.PUT_STATE, txid="x"))  # only the chaincode sends this
        error = p.control.get(timeout=WAIT)
        assert error.type == T.ERROR and b"cannot handle message (PUT_STATE)" in (
            error.payload)
        p.reader.join(timeout=WAIT)
        assert not p.reader.is_alive()
    finally:
        p.close()


def test_python_m_chaincode_server_registers(tmp_path: Path) -> None:
    env = {**os.environ, "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0",
           "CHAINCODE_ID": PACKAGE_ID}
    proc = subprocess.Popen([sys.executable, "-m", "chaincode.server"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        while "listening on" not in (line := proc.stderr.readline()) and line:
            lines.append(line)
        assert "listening on 127.0.0.1:" in line, lines
        peer = FakePeer(int(line.rsplit(":", 1)[1]))  # checks REGISTER's package id
        peer.send(Msg(type=T.KEEPALIVE))
        assert peer.control.get(timeout=WAIT).type == T.KEEPALIVE
        peer.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=WAIT) == 0
