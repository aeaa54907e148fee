"""The Fabric ledger: the ``Ledger`` protocol over a peer's Gateway service.

A ``FabricNetwork`` is what the network launcher wrote to ``network.json`` (channel,
chaincode, peer and orderer endpoints with their TLS roots, the wallet); one gRPC
channel per peer is opened on first use and shared by every ``FabricLedger`` of
that network. A ``FabricLedger`` is one identity talking to one peer's Gateway, as
the official fabric-gateway clients do:

- a query is a signed proposal sent to ``Evaluate``;
- a command is ``Endorse`` (the Gateway collects endorsements), the client signs
  the prepared envelope, ``Submit`` hands it to the orderers and ``CommitStatus``
  (a signed request) waits until the Gateway's peer has validated it;
- committed events come from ``ChaincodeEvents`` (a signed request, from a start
  block) or, for a bounded read, from the peer's block ``Deliver`` service.

A contract rejection comes back as the same typed ``ContractError`` the embedded
ledger raises: the chaincode's JSON error is found in the Gateway's error (the
status message for ``Evaluate``, the ``gateway.ErrorDetail`` entries of the status
details for ``Endorse``) and rebuilt with ``chaincode.errors.from_payload``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status

from chaincode.encoding import canonical_json
from chaincode.errors import ContractError, from_payload
from ledger.fabric.identity import FabricIdentity
from ledger.protocol import (
    CommitError,
    CommittedEvent,
    CommittedTransaction,
    EndorseError,
    KeyVersion,
    LedgerError,
    Position,
    Receipt,
    SubmitError,
    VerifyReport,
)

log = logging.getLogger(__name__)

Pb = Any  # a protobuf message (the generated modules have no stubs)

# A batch of 10,000 card records is several MB; gRPC's default limit is 4 MB.
MAX_MESSAGE = 256 * 1024 * 1024
GRPC_OPTIONS = (("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE))
VALID = "VALID"
NONCE_BYTES = 24
SYSTEM_QUERIES = "qscc"
TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
TX_VALID = transaction_pb2.TxValidationCode.Value("VALID")
# Endorsements refused because endorsing peers lag one another are tried again.
ENDORSE_ATTEMPTS = 6
# Submits no orderer accepted (UNAVAILABLE) are sent again for about 10 s.
SUBMIT_ATTEMPTS = 9

# What qscc answers for a transaction id the peer's ledger does not hold.
_NOT_FOUND = "no such transaction id"
# Stream failures worth no retry: the request itself is wrong or not allowed.
PERMANENT = frozenset({"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED",
                       "NOT_FOUND", "FAILED_PRECONDITION", "UNIMPLEMENTED"})


# ------------------------------------------------------------------ network
@dataclass(frozen=True)
class PeerEndpoint:
    """One organisation's peer: where its Gateway listens and how to trust it."""

    org: str
    msp_id: str
    address: str
    tls_root: Path
    host: str = ""  # the TLS host name; certificates also carry 127.0.0.1


@dataclass(frozen=True)
class OrdererEndpoint:
    name: str
    address: str
    tls_root: Path


@dataclass(eq=False)
class FabricNetwork:
    """A running network as its launcher describes it in ``network.json``."""

    directory: Path
    channel: str
    chaincode: str
    peers: dict[str, PeerEndpoint]
    orderers: tuple[OrdererEndpoint, ...]
    wallet: Path
    _channels: dict[str, grpc.Channel] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = field(default=False, repr=False)
    # Read-your-writes across peers: the newest block any of our commands
    # committed in, and how far each peer is known to have got.
    committed: int = field(default=-1, repr=False)
    heights: dict[str, int] = field(default_factory=dict, repr=False)

    def note_commit(self, org: str, block_number: int) -> None:
        """A command committed in ``block_number``, as ``org``'s peer reported."""
        with self._lock:
            self.committed = max(self.committed, block_number)
            self.heights[org] = max(self.heights.get(org, 0), block_number + 1)

    def lags(self, org: str) -> bool:
        """Whether ``org``'s peer may not hold every block our commands made."""
        return self.heights.get(org, 0) <= self.committed

    @classmethod
    def load(cls, directory: Path) -> FabricNetwork:
        """Read ``directory/network.json`` (written by ``cityunion network up``);
        raises ValueError naming the file and the missing or malformed entry."""
        path = Path(directory) / "network.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            peers = {org: PeerEndpoint(org, p["msp_id"], p["address"],
                                       Path(p["tls_root"]), p.get("host", ""))
                     for org, p in raw["peers"].items()}
            orderers = tuple(OrdererEndpoint(o["name"], o["address"],
                                             Path(o["tls_root"]))
                             for o in raw.get("orderers", []))
            return cls(Path(directory), raw["channel"], raw["chaincode"], peers,
                       orderers, Path(raw["wallet"]))
        except FileNotFoundError as e:
            raise ValueError(f"{path} not found: is a network running there "
                             "(cityunion network up --dir ...)?") from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: malformed network description ({e!r}); "
                             "expected channel, chaincode, peers{org: {msp_id, "
                             "address, tls_root, host}}, orderers and wallet") from e

    def identity(self, org: str, user: str) -> FabricIdentity:
        """The wallet entry ``WALLET/<org>/<user>`` (certificate, key, MSP id);
        raises ValueError listing the users the wallet holds for that org."""
        directory = self.wallet / org / user
        if not (directory / "identity.json").is_file():
            known = sorted(p.name for p in (self.wallet / org).glob("*")
                           if (p / "identity.json").is_file())
            raise ValueError(f"no identity {org}/{user} in {self.wallet} (users of "
                             f"{org}: {', '.join(known) or 'none'})")
        return FabricIdentity.load(directory)

    def org_of(self, msp_id: str) -> str:
        """The organisation (a key of ``peers``) whose MSP is ``msp_id``."""
        for org, peer in self.peers.items():
            if peer.msp_id == msp_id:
                return org
        accepted = ", ".join(p.msp_id for p in self.peers.values())
        raise ValueError(f"no peer of MSP {msp_id!r} in this network "
                         f"(accepted: {accepted})")

    def connect(self, org: str) -> grpc.Channel:
        """The one gRPC channel to ``org``'s peer (TLS with the org's TLS root),
        opened on first use and shared by all callers; thread-safe."""
        with self._lock:
            if self.closed:
                raise LedgerError("the Fabric network connection is closed")
            found = self._channels.get(org)
            if found is None:
                peer = self.peers[org]
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=peer.tls_root.read_bytes())
                found = grpc.secure_channel(peer.address, credentials,
                                            options=GRPC_OPTIONS)
                self._channels[org] = found
            return found

    def close(self) -> None:
        """Close every peer channel; calls in flight fail, event streams end."""
        with self._lock:
            self.closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def __enter__(self) -> FabricNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- proposals
def tx_id_for(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: hex SHA-256 of the nonce and serialized creator."""
    return hashlib.sha256(nonce + creator).hexdigest()


def chaincode_args(function: str, args: dict[str, Any]) -> list[bytes]:
    """The chaincode input as the contract reads it: the function name, then the
    arguments as one canonical JSON object (as the embedded ledger passes them)."""
    return [function.encode(), canonical_json(args)]


def build_proposal(identity: FabricIdentity, channel: str, chaincode: str,
                   args: Sequence[bytes], transient: dict[str, bytes] | None = None,
                   *, nonce: bytes | None = None,
                   timestamp: datetime | None = None) -> tuple[str, Pb]:
    """A ``peer.SignedProposal`` invoking ``chaincode`` on ``channel`` with
    ``args``, and its transaction id: an ENDORSER_TRANSACTION channel header with
    the chaincode id in its extension, a signature header with the serialized
    creator and a 24-byte random nonce, the invocation spec and the transient map
    in the payload, and the creator's low-S ECDSA signature over the proposal
    bytes. ``nonce`` fixes the transaction id (an idempotent retry's);
    ``timestamp`` is for tests."""
    nonce = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
    tx_id = tx_id_for(nonce, identity.serialized)
    stamp = Timestamp()
    stamp.FromDatetime(timestamp or datetime.now(UTC))
    chaincode_id = chaincode_pb2.ChaincodeID(name=chaincode)
    channel_header = common_pb2.ChannelHeader(
        type=ENDORSER_TRANSACTION, tx_id=tx_id, timestamp=stamp, channel_id=channel,
        extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=chaincode_id).SerializeToString())
    signature_header = common_pb2.SignatureHeader(creator=identity.serialized,
                                                  nonce=nonce)
    header = common_pb2.Header(channel_header=channel_header.SerializeToString(),
                               signature_header=signature_header.SerializeToString())
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_id,
            input=chaincode_pb2.ChaincodeInput(args=list(args))))
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=spec.SerializeToString(), TransientMap=transient or {})
    proposal = proposal_pb2.Proposal(
        header=header.SerializeToString(),
        payload=payload.SerializeToString()).SerializeToString()
    return tx_id, proposal_pb2.SignedProposal(proposal_bytes=proposal,
                                              signature=identity.sign(proposal))


def chaincode_action(envelope_payload: bytes) -> Pb:
    """The ``peer.ChaincodeAction`` (response, events, read-write set) inside a
    prepared transaction's payload, as the endorsers produced it."""
    payload = common_pb2.Payload.FromString(envelope_payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(
        transaction.actions[0].payload)
    response = proposal_response_pb2.ProposalResponsePayload.FromString(
        action.action.proposal_response_payload)
    return proposal_pb2.ChaincodeAction.FromString(response.extension)


def committed_transaction(processed: Pb, block_number: int) -> CommittedTransaction:
    """A ``peer.ProcessedTransaction`` (qscc ``GetTransactionByID``) in the Ledger
    protocol's shape: the chaincode input it was proposed with (function, then
    canonical JSON arguments), its validation code, and the endorsed response
    and chaincode event its receipt reported."""
    envelope = processed.transactionEnvelope
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(
        transaction.actions[0].payload)
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(
        proposal_pb2.ChaincodeProposalPayload.FromString(
            action_payload.chaincode_proposal_payload).input)
    args = list(spec.chaincode_spec.input.args)
    action = chaincode_action(envelope.payload)
    events = domain_events(
        chaincode_event_pb2.ChaincodeEvent.FromString(action.events).payload)
    return CommittedTransaction(
        header.tx_id, block_number, _validation_code(processed.validationCode),
        args[0].decode() if args else "", args[1].decode() if len(args) > 1 else "",
        _json_object(action.response.payload), events)


def domain_events(payload: bytes) -> list[dict[str, Any]]:
    """The domain events of one chaincode event: its payload is a JSON list."""
    if not payload:
        return []
    events = json.loads(payload)
    return events if isinstance(events, list) else []


def _json_object(payload: bytes) -> dict[str, Any]:
    return dict(json.loads(payload)) if payload else {}


# ------------------------------------------------------------------- errors
_ERROR_START = re.compile(r'\{\s*"error"\s*:')
_DECODER = json.JSONDecoder()


def contract_error_in(text: str) -> ContractError | None:
    """The typed contract error whose JSON payload (``{"error": ..., "message":
    ..., "field": ...}``) appears in ``text``, e.g. in the Gateway's ``chaincode
    response 409, {...}``; None when there is none."""
    for match in _ERROR_START.finditer(text):
        try:
            _, end = _DECODER.raw_decode(text, match.start())
        except ValueError:
            continue
        found = from_payload(text[match.start():end])
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class GatewayFailure:
    """A failed Gateway call: the gRPC status and each peer's ``ErrorDetail``."""

    code: str
    message: str
    details: tuple[tuple[str, str, str], ...] = ()  # (address, msp_id, message)

    @classmethod
    def of(cls, error: grpc.RpcError) -> GatewayFailure:
        """Read the status code, message and ``gateway.ErrorDetail`` entries of a
        failed call (the details travel in the ``grpc-status-details-bin``
        trailer)."""
        call: Any = error
        code = call.code() if hasattr(call, "code") else None
        message = call.details() if hasattr(call, "details") else str(error)
        details: list[tuple[str, str, str]] = []
        try:
            status = rpc_status.from_call(call) if hasattr(call, "code") else None
        except ValueError:  # trailer and status disagree: ignore the trailer
            status = None
        for item in status.details if status is not None else []:
            if item.Is(gateway_pb2.ErrorDetail.DESCRIPTOR):
                detail = gateway_pb2.ErrorDetail()
                item.Unpack(detail)
                details.append((detail.address, detail.msp_id, detail.message))
        return cls(code.name if code is not None else "UNKNOWN", message or "",
                   tuple(details))

    def contract_error(self) -> ContractError | None:
        """The chaincode's typed rejection, if that is what failed."""
        for _, _, message in self.details:
            found = contract_error_in(message)
            if found is not None:
                return found
        return contract_error_in(self.message)

    def peers_lag(self, own_peer: str) -> bool:
        """Whether the endorsers disagreed because some had not yet committed
        the latest blocks: their responses differ, or only other peers than
        ``own_peer`` (which endorses first, and refuses a rejected proposal
        itself) failed. Such a proposal is worth sending again."""
        if "ProposalResponsePayloads do not match" in str(self):
            return True
        return bool(self.details) and all(addr and addr != own_peer
                                          for addr, _, _ in self.details)

    def __str__(self) -> str:
        peers = "".join(f"; {msp or '?'} {addr or '?'}: {msg}"
                        for addr, msp, msg in self.details)
        return f"{self.code}: {self.message}{peers}"


def _fail(error: grpc.RpcError, kind: type[LedgerError], what: str,
          tx_id: str | None) -> NoReturn:
    failure = GatewayFailure.of(error)
    contract = failure.contract_error()
    if contract is not None:
        raise contract from None
    raise kind(f"{what} failed: {failure}", tx_id) from None


# ------------------------------------------------------------------- events
def block_chaincode_events(raw_block: bytes, chaincode: str) -> tuple[int, list[Pb]]:
    """The block's number and the ``peer.ChaincodeEvent``s of ``chaincode`` the
    Gateway's ChaincodeEvents service would deliver for it: from valid endorser
    transactions only, in transaction order, one per action that set an event
    (named, with chaincode and transaction ids)."""
    block = common_pb2.Block.FromString(raw_block)
    metadata = block.metadata.metadata
    flags = metadata[TRANSACTIONS_FILTER] if len(metadata) > TRANSACTIONS_FILTER \
        else b""
    out: list[Pb] = []
    for index, envelope_bytes in enumerate(block.data.data):
        envelope = common_pb2.Envelope.FromString(envelope_bytes)
        payload = common_pb2.Payload.FromString(envelope.payload)
        header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        if header.type != ENDORSER_TRANSACTION or index >= len(flags) \
                or flags[index] != TX_VALID:
            continue
        for action in transaction_pb2.Transaction.FromString(payload.data).actions:
            try:
                action_payload = transaction_pb2.ChaincodeActionPayload.FromString(
                    action.payload)
                response = proposal_response_pb2.ProposalResponsePayload.FromString(
                    action_payload.action.proposal_response_payload)
                event = chaincode_event_pb2.ChaincodeEvent.FromString(
                    proposal_pb2.ChaincodeAction.FromString(response.extension).events)
            except DecodeError:
                continue
            if event.chaincode_id == chaincode and event.event_name and event.tx_id:
                out.append(event)
    return block.header.number, out


def committed_events(block_number: int, events: Sequence[Pb],
                     after: Position | None = None) -> Iterator[CommittedEvent]:
    """The domain events of one block's delivered chaincode events, each at
    ``Position(block, i, j)`` (i: the chaincode event's ordinal in the block, j:
    the domain event's index in its list), skipping those at or before
    ``after``."""
    for i, event in enumerate(events):
        if after is not None and (block_number, i) < after[:2]:
            continue
        for j, body in enumerate(domain_events(event.payload)):
            position = Position(block_number, i, j)
            if after is not None and position <= after:
                continue
            yield CommittedEvent(position, event.tx_id, body["type"],
                                 body["aggregate_id"], body["version"],
                                 body["timestamp"], body["data"])


def _common_name(certificate: bytes) -> str:
    try:
        names = x509.load_pem_x509_certificate(certificate).subject \
            .get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(names[0].value) if names else ""


def creator_of(envelope: Pb) -> str:
    """``MSPID:common name`` of the transaction's creator (its signature header),
    as the embedded ledger names creators in key histories."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    creator = identities_pb2.SerializedIdentity.FromString(header.creator)
    return f"{creator.mspid}:{_common_name(creator.id_bytes)}"


def tx_index_in(block: Pb, tx_id: str) -> int:
    """Where the transaction ``tx_id`` sits in ``block.data``; -1 if absent."""
    for index, envelope_bytes in enumerate(block.data.data):
        payload = common_pb2.Payload.FromString(
            common_pb2.Envelope.FromString(envelope_bytes).payload)
        if common_pb2.ChannelHeader.FromString(
                payload.header.channel_header).tx_id == tx_id:
            return index
    return -1


# ------------------------------------------------------------------- client
@dataclass(frozen=True)
class Timeouts:
    """Seconds each Gateway call may take (a 10,000-record batch endorses in
    about 8 s on a loaded machine; the chaincode's own limit is 30 s)."""

    evaluate: float = 60.0
    endorse: float = 90.0
    submit: float = 60.0
    commit_status: float = 300.0


class FabricLedger:
    """The Ledger protocol for one identity through one peer's Gateway."""

    retry_min = 0.2  # seconds before reconnecting a broken event stream ...
    retry_max = 5.0  # ... doubling up to this

    def __init__(self, network: FabricNetwork, identity: FabricIdentity,
                 peer: str | None = None, *, timeouts: Timeouts | None = None) -> None:
        """Talk to the Gateway of ``peer``'s peer (an organisation name of the
        network; by default the identity's own organisation) as ``identity``."""
        self.network = network
        self.identity = identity
        org = peer or network.org_of(identity.msp_id)
        if org not in network.peers:
            raise ValueError(f"no peer {org!r} in this network (accepted: "
                             f"{', '.join(network.peers)})")
        self.peer: PeerEndpoint = network.peers[org]
        self.timeouts = timeouts or Timeouts()
        self._channel = network.connect(self.peer.org)
        self._gateway = gateway_pb2_grpc.GatewayStub(self._channel)

    # ------------------------------------------------------------ commands
    def submit(self, function: str, args: dict[str, Any],
               transient: dict[str, bytes] | None = None, *,
               nonce: bytes | None = None) -> Receipt:
        """Endorse, order and commit one command and return its receipt; raises
        the contract's ContractError when it rejects the command (nothing is
        written), EndorseError or SubmitError when the network refuses it (the
        peers refuse a ``nonce`` whose transaction id the ledger holds), and
        CommitError when it was committed as invalid (e.g. an MVCC conflict)."""
        return self.submit_async(function, args, transient, nonce=nonce).result()

    def submit_async(self, function: str, args: dict[str, Any],
                     transient: dict[str, bytes] | None = None, *,
                     nonce: bytes | None = None) -> Future[Receipt]:
        """Endorse and hand the transaction to the orderers now, and return a
        future of its receipt without waiting for the commit (the commit status is
        awaited by gRPC, no thread is held). A contract rejection, EndorseError or
        SubmitError is raised here; the future raises CommitError for an invalid
        commit, or LedgerError when the commit status could not be learned."""
        self._catch_up()
        for attempt in range(ENDORSE_ATTEMPTS):
            tx_id, signed = build_proposal(self.identity, self.network.channel,
                                           self.network.chaincode,
                                           chaincode_args(function, args), transient,
                                           nonce=nonce)
            try:
                endorsed = self._gateway.Endorse(
                    gateway_pb2.EndorseRequest(transaction_id=tx_id,
                                               channel_id=self.network.channel,
                                               proposed_transaction=signed),
                    timeout=self.timeouts.endorse)
                break
            except grpc.RpcError as e:
                if (attempt + 1 < ENDORSE_ATTEMPTS
                        and GatewayFailure.of(e).peers_lag(self.peer.address)):
                    time.sleep(0.05 * 2 ** attempt)
                    continue
                _fail(e, EndorseError, f"endorsing {function} ({tx_id})", tx_id)
        envelope = endorsed.prepared_transaction
        action = chaincode_action(envelope.payload)
        result = _json_object(action.response.payload)
        events = domain_events(
            chaincode_event_pb2.ChaincodeEvent.FromString(action.events).payload)
        envelope.signature = self.identity.sign(envelope.payload)
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                self._gateway.Submit(
                    gateway_pb2.SubmitRequest(transaction_id=tx_id,
                                              channel_id=self.network.channel,
                                              prepared_transaction=envelope),
                    timeout=self.timeouts.submit)
                break
            except grpc.RpcError as e:
                # No orderer took it (a Raft election, an orderer restarting):
                # the same signed envelope may go again, a tx id commits once.
                if (attempt + 1 < SUBMIT_ATTEMPTS
                        and e.code() == grpc.StatusCode.UNAVAILABLE):
                    time.sleep(min(0.1 * 2 ** attempt, 2.0))
                    continue
                _fail(e, SubmitError, f"submitting {function} ({tx_id})", tx_id)
        request = gateway_pb2.CommitStatusRequest(
            transaction_id=tx_id, channel_id=self.network.channel,
            identity=self.identity.serialized).SerializeToString()
        pending = self._gateway.CommitStatus.future(
            gateway_pb2.SignedCommitStatusRequest(
                request=request, signature=self.identity.sign(request)),
            timeout=self.timeouts.commit_status)
        outcome: Future[Receipt] = Future()

        def settle(done: Any) -> None:
            try:
                status = done.result()
            except grpc.RpcError as e:
                outcome.set_exception(LedgerError(
                    f"commit status of {tx_id} unknown: {GatewayFailure.of(e)}",
                    tx_id))
                return
            except Exception as e:  # cancelled: the network was closed
                outcome.set_exception(LedgerError(
                    f"commit status of {tx_id} unknown: {e!r}", tx_id))
                return
            name = _validation_code(status.result)
            self.network.note_commit(self.peer.org, status.block_number)
            if name != VALID:
                outcome.set_exception(CommitError(
                    f"transaction {tx_id} committed as {name} in block "
                    f"{status.block_number}", tx_id, name))
            else:
                outcome.set_result(Receipt(tx_id, status.block_number, name, result,
                                           events))

        pending.add_done_callback(settle)
        return outcome

    def tx_id(self, nonce: bytes) -> str:
        """The id of this identity's transaction with ``nonce``."""
        return tx_id_for(nonce, self.identity.serialized)

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        """The transaction ``tx_id`` as this Gateway's peer committed it (qscc
        ``GetTransactionByID``: its envelope and validation code; the first one
        when the id was submitted twice), in the block qscc ``GetBlockByTxID``
        names; None when the peer holds no transaction with that id."""
        self._catch_up()
        try:
            raw = self._system_query("GetTransactionByID", tx_id)
        except EndorseError as e:
            if _NOT_FOUND in str(e).lower():
                return None
            raise
        block = common_pb2.Block.FromString(
            self._system_query("GetBlockByTxID", tx_id))
        return committed_transaction(
            transaction_pb2.ProcessedTransaction.FromString(raw),
            int(block.header.number))

    # ------------------------------------------------------------- queries
    def evaluate(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a contract query on the Gateway's own peer (the one whose commit
        status ``submit`` waits for, so a query sees the caller's committed
        writes); raises the contract's ContractError when it rejects the query."""
        self._catch_up()
        return _json_object(self._evaluate(self.network.chaincode,
                                           chaincode_args(function, args),
                                           function))

    def _catch_up(self, timeout: float = 10.0) -> None:
        """Wait until this Gateway's peer holds every block a command of this
        network connection committed in (another city's peer reported it), so a
        command or query that depends on it is not refused by a lagging peer;
        after ``timeout`` go on and let the peer answer."""
        org, deadline = self.peer.org, time.monotonic() + timeout
        while self.network.lags(org):
            target = self.network.committed
            seen = self._peer_height()
            with self.network._lock:
                self.network.heights[org] = max(self.network.heights.get(org, 0),
                                                seen)
            if seen > target or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def _evaluate(self, chaincode: str, args: Sequence[bytes], what: str) -> bytes:
        tx_id, signed = build_proposal(self.identity, self.network.channel,
                                       chaincode, args)
        try:
            response = self._gateway.Evaluate(
                gateway_pb2.EvaluateRequest(
                    transaction_id=tx_id, channel_id=self.network.channel,
                    proposed_transaction=signed,
                    target_organizations=[self.peer.msp_id]),
                timeout=self.timeouts.evaluate)
        except grpc.RpcError as e:
            _fail(e, EndorseError, f"evaluating {what}", tx_id)
        return bytes(response.result.payload)

    def _system_query(self, function: str, *args: str) -> bytes:
        """A query of the peer's ledger through the query system chaincode."""
        return self._evaluate(SYSTEM_QUERIES, [function.encode(),
                                               self.network.channel.encode(),
                                               *(a.encode() for a in args)],
                              f"{SYSTEM_QUERIES} {function}")

    def height(self) -> int:
        """The number of blocks on the channel, as the Gateway's peer has them
        (qscc ``GetChainInfo``), once that peer holds every block this network
        connection's commands committed in."""
        self._catch_up()
        return self._peer_height()

    def _peer_height(self) -> int:
        return int(ledger_pb2.BlockchainInfo.FromString(
            self._system_query("GetChainInfo")).height)

    def history(self, key: str) -> list[KeyVersion]:
        """Every committed version of a world-state key, oldest first: the values
        from the contract's ``KeyHistory`` query, the block number and position
        from qscc ``GetBlockByTxID`` and the creator (``MSPID:common name``) from
        qscc ``GetTransactionByID``."""
        found = self.evaluate("KeyHistory", {"key": key})
        versions = []
        for version in found.get("history", []):
            tx_id = version["tx_id"]
            processed = transaction_pb2.ProcessedTransaction.FromString(
                self._system_query("GetTransactionByID", tx_id))
            block = common_pb2.Block.FromString(
                self._system_query("GetBlockByTxID", tx_id))
            versions.append(KeyVersion(
                key, int(block.header.number), tx_index_in(block, tx_id), tx_id,
                creator_of(processed.transactionEnvelope), version["timestamp"],
                version["value"], bool(version["is_delete"])))
        return sorted(versions, key=lambda v: (v.block_number, v.tx_index))

    # -------------------------------------------------------------- events
    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]:
        """Committed domain events in ledger order, each at Position(block, i,
        j): i is the ordinal of its transaction's chaincode event among those the
        Gateway delivers for the block, j its index in the transaction's list.
        With ``after`` (a position already processed) reading resumes from that
        block and skips everything at or before it. ``follow=False`` stops at the
        height the peer has when the read starts (blocks come from the peer's
        Deliver service, which ends there); ``follow=True`` streams the Gateway's
        ChaincodeEvents without end, reconnecting from the last block read, with
        backoff, whenever the stream breaks (e.g. a peer restart)."""
        if follow:
            return self._follow(after)
        return self._until_height(after)

    def _until_height(self, after: Position | None) -> Iterator[CommittedEvent]:
        # Not ChaincodeEvents: it sends nothing for a block without this
        # chaincode's events (config, lifecycle, all invalid), so a reader cannot
        # tell that it has passed the height; a Deliver range ends by itself.
        from ledger.fabric.blocks import deliver_blocks

        start, top = (max(after.block, 0) if after else 0), self.height() - 1
        if start > top:
            return
        for raw in deliver_blocks(self._channel, self.identity, self.network.channel,
                                  start, top):
            number, events = block_chaincode_events(raw, self.network.chaincode)
            if number > top:
                return
            yield from committed_events(number, events, after)

    def _events_request(self, start: int) -> Pb:
        request = gateway_pb2.ChaincodeEventsRequest(
            channel_id=self.network.channel, chaincode_id=self.network.chaincode,
            identity=self.identity.serialized,
            start_position=ab_pb2.SeekPosition(
                specified=ab_pb2.SeekSpecified(number=start))).SerializeToString()
        return gateway_pb2.SignedChaincodeEventsRequest(
            request=request, signature=self.identity.sign(request))

    def _follow(self, after: Position | None) -> Iterator[CommittedEvent]:
        next_block = max(after.block, 0) if after else 0
        delay = self.retry_min
        while not self.network.closed:
            try:
                stream = self._gateway.ChaincodeEvents(self._events_request(next_block))
            except ValueError:
                if self.network.closed:  # the channel was closed under us
                    return
                raise
            try:
                for response in stream:
                    delay = self.retry_min
                    yield from committed_events(response.block_number,
                                                response.events, after)
                    next_block = response.block_number + 1
                why = "the stream ended"
            except grpc.RpcError as e:
                failure = GatewayFailure.of(e)
                if self.network.closed:
                    return
                if failure.code in PERMANENT:
                    raise LedgerError(f"chaincode event stream refused: {failure}"
                                      ) from None
                why = str(failure)
            finally:
                stream.cancel()
            log.warning("chaincode event stream from %s broke (%s); reconnecting "
                        "from block %d in %.1f s", self.peer.address,
                        why, next_block, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    # -------------------------------------------------------------- blocks
    def block(self, number: int) -> dict[str, Any]:
        """Block ``number`` as the peer's Deliver service returns it, in the
        Ledger protocol's common shape; ``raw`` is the decoded block
        (``ledger.fabric.blocks.describe_block``). The timestamp is the first
        transaction's (Fabric headers carry none); the signature names the
        orderers that signed it. Raises LedgerError for a block the channel does
        not have yet."""
        from ledger.fabric.blocks import deliver_blocks, describe_block

        height = self.height()
        if not 0 <= number < height:
            raise LedgerError(f"no block {number} (height {height})")
        for raw in deliver_blocks(self._channel, self.identity, self.network.channel,
                                  number, number):
            return _summary(raw, describe_block(raw), self.network.chaincode)
        raise LedgerError(f"the peer delivered no block {number}")

    def verify(self, progress: Any = None) -> VerifyReport:
        """Check the whole chain as the peer delivers it, block 0 to the current
        height: hash links, data hashes and signatures
        (``ledger.fabric.blocks.verify_chain``)."""
        from ledger.fabric.blocks import deliver_blocks, verify_chain

        top = self.height() - 1
        report: VerifyReport = verify_chain(
            deliver_blocks(self._channel, self.identity, self.network.channel, 0,
                           top), progress=progress)
        return report


def _summary(raw: bytes, described: dict[str, Any], chaincode: str
             ) -> dict[str, Any]:
    """A described Fabric block in the Ledger protocol's common shape: the
    signature is the orderer's (hex DER ECDSA), each transaction's the
    creator's signature of its envelope."""
    block = common_pb2.Block.FromString(raw)
    _, delivered = block_chaincode_events(raw, chaincode)
    events = {e.tx_id: [d["type"] for d in domain_events(e.payload)]
              for e in delivered}
    envelopes = [common_pb2.Envelope.FromString(d) for d in block.data.data]
    txs = [{"tx_id": t.get("tx_id", ""),
            "function": t.get("function") or t.get("type", ""),
            "creator_msp": t.get("creator", {}).get("msp_id", ""),
            "creator": t.get("creator", {}).get("cn", ""),
            "timestamp": t.get("timestamp", ""), "validation": t["validation"],
            "signature": envelope.signature.hex(),
            "events": events.get(t.get("tx_id", ""), [])}
           for t, envelope in zip(described["transactions"], envelopes, strict=True)
           if t.get("type") != "CONFIG"]
    metadata = block.metadata.metadata
    signatures = common_pb2.Metadata.FromString(metadata[0]).signatures \
        if metadata else []
    return {"number": described["number"], "hash": described["hash"],
            "previous_hash": described["previous_hash"],
            "data_hash": described["data_hash"],
            "timestamp": described["transactions"][0].get("timestamp", "")
            if described["transactions"] else "",
            "tx_count": len(block.data.data),
            "signature": signatures[0].signature.hex() if signatures else "",
            "signed_by": described["orderer_signers"],
            "transactions": txs, "raw": described}


def _validation_code(code: int) -> str:
    try:
        return str(transaction_pb2.TxValidationCode.Name(code))
    except ValueError:
        return f"UNKNOWN_VALIDATION_CODE_{code}"


__all__ = ["FabricLedger", "FabricNetwork", "GatewayFailure", "OrdererEndpoint",
           "PeerEndpoint", "Timeouts", "block_chaincode_events", "build_proposal",
           "chaincode_action", "chaincode_args", "committed_events",
           "committed_transaction",
           "contract_error_in", "tx_id_for"]
