"""Fabric blocks for auditors: fetch a channel's blocks from a peer, describe them,
keep them on disk, and verify the chain offline.

``deliver_blocks`` reads raw ``common.Block`` bytes from the peer's Deliver
service. ``verify_chain`` re-checks a chain from its genesis config block with no
network, as Fabric 2.5 checks blocks and transactions: the header links and hashes
(``protoutil.BlockHeaderBytes``, ``BlockDataHash``), the orderer's block
signatures, each transaction's form, creator certificate chain, signature and tx
id, and for valid endorser transactions the proposal hash, every endorsement, the
consortium's endorsement policy (a majority of member cities, ``MAJORITY`` of
``network/consortium.toml``'s cities) and the chaincode event. Trust comes only
from block 0 and the config blocks after it, as a peer's does.

What no offline check can settle: the validation codes themselves (the peer's
TRANSACTIONS_FILTER metadata is covered by no hash or signature, and an MVCC
conflict depends on world state), certificate expiry (Fabric judges it at
validation time), and whether a config update satisfied its mod policies (its
signatures are checked, the policy evaluation is not replayed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import grpc
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    events_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.fabric.identity import P256_ORDER, FabricIdentity
from ledger.protocol import LedgerError, VerifyReport
from network.consortium import load_consortium

_SIGNATURES = common_pb2.BlockMetadataIndex.Value("SIGNATURES")
_TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
_CONFIG = common_pb2.HeaderType.Value("CONFIG")
_ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
_VALID = transaction_pb2.TxValidationCode.Value("VALID")
# Codes a peer gives before (or instead of) checking the creator's signature and
# the tx id: such a transaction may well carry a bad signature or be malformed.
_REJECTED_UNCHECKED = frozenset(transaction_pb2.TxValidationCode.Value(n) for n in (
    "NIL_ENVELOPE", "BAD_PAYLOAD", "BAD_COMMON_HEADER", "BAD_CREATOR_SIGNATURE",
    "INVALID_ENDORSER_TRANSACTION", "INVALID_CONFIG_TRANSACTION",
    "UNSUPPORTED_TX_PAYLOAD", "BAD_PROPOSAL_TXID", "TARGET_CHAIN_NOT_FOUND",
    "UNKNOWN_TX_TYPE", "MARSHAL_TX_ERROR", "NIL_TXACTION", "BAD_HEADER_EXTENSION",
    "BAD_CHANNEL_HEADER", "INVALID_OTHER_REASON"))
_BLOCK_FILE = re.compile(r"^(\d+)\.block$")
_MAX_CHAIN = 8  # certificates between an identity and its root, inclusive


# --- hashes -------------------------------------------------------------------


class _Asn1Header(asn1.Sequence):
    """The ASN.1 form in which Fabric hashes a block header
    (``protoutil.BlockHeaderBytes``)."""

    _fields: ClassVar[list[tuple[str, type[asn1.Asn1Value]]]] = [
        ("number", asn1.Integer), ("previous_hash", asn1.OctetString),
        ("data_hash", asn1.OctetString)]


def _header_bytes(header: common_pb2.BlockHeader) -> bytes:
    der: bytes = _Asn1Header({"number": header.number,
                              "previous_hash": bytes(header.previous_hash),
                              "data_hash": bytes(header.data_hash)}).dump()
    return der


def _header_hash(header: common_pb2.BlockHeader) -> bytes:
    return hashlib.sha256(_header_bytes(header)).digest()


def _data_hash(data: Iterable[bytes]) -> bytes:
    """SHA-256 over the concatenated envelopes (Fabric 2.5 ``BlockDataHash``)."""
    digest = hashlib.sha256()
    for entry in data:
        digest.update(entry)
    return digest.digest()


def _tx_id(nonce: bytes, creator: bytes) -> str:
    return hashlib.sha256(nonce + creator).hexdigest()


# --- fetching -----------------------------------------------------------------


def _seek_position(number: int | None) -> ab_pb2.SeekPosition:
    if number is None:
        return ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest())
    return ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=number))


def _seek_envelope(identity: FabricIdentity, channel_name: str, start: int,
                   stop: int | None, wait: bool) -> common_pb2.Envelope:
    nonce = os.urandom(24)
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.Value("DELIVER_SEEK_INFO"), channel_id=channel_name,
        tx_id=_tx_id(nonce, identity.serialized), timestamp=timestamp, epoch=0)
    seek = ab_pb2.SeekInfo(
        start=_seek_position(start), stop=_seek_position(stop),
        behavior=ab_pb2.SeekInfo.SeekBehavior.Value(
            "BLOCK_UNTIL_READY" if wait else "FAIL_IF_NOT_READY"))
    payload = common_pb2.Payload(
        header=common_pb2.Header(
            channel_header=channel_header.SerializeToString(),
            signature_header=common_pb2.SignatureHeader(
                creator=identity.serialized, nonce=nonce).SerializeToString()),
        data=seek.SerializeToString()).SerializeToString()
    return common_pb2.Envelope(payload=payload, signature=identity.sign(payload))


def deliver_blocks(channel: grpc.Channel, identity: FabricIdentity, channel_name: str,
                   start: int, stop: int | None, *, wait: bool = False,
                   timeout: float | None = None) -> Iterator[bytes]:
    """Blocks ``start``..``stop`` (inclusive; ``None``: up to the newest block when
    the request reaches the peer) of ``channel_name``, as raw ``common.Block``
    bytes, read from the peer's ``protos.Deliver/Deliver`` stream with a seek
    request signed by ``identity`` (which must satisfy the channel's Readers
    policy). By default a block not yet committed ends the stream with NOT_FOUND;
    ``wait=True`` asks the peer to hold the stream open until it is
    (BLOCK_UNTIL_READY; Fabric still answers NOT_FOUND when ``start`` is beyond the
    current height, so follow the chain from the height on). A status other than
    SUCCESS, or a failed stream (``timeout`` seconds for the whole stream), raises
    ``LedgerError`` naming it; closing the iterator early cancels the stream.
    Blocks over 4 MiB need ``grpc.max_receive_message_length`` on ``channel``."""
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"block range {start}..{stop} is empty or negative "
                         "(need 0 <= start <= stop, or stop=None for the newest)")
    envelope = _seek_envelope(identity, channel_name, start, stop, wait)
    what = (f"deliver of blocks {start}..{'newest' if stop is None else stop} on "
            f"channel {channel_name!r}")
    return _stream(channel, envelope, what, timeout)


def _stream(channel: grpc.Channel, envelope: common_pb2.Envelope, what: str,
            timeout: float | None) -> Iterator[bytes]:
    call = events_pb2_grpc.DeliverStub(channel).Deliver(iter([envelope]),
                                                        timeout=timeout)
    try:
        for response in call:
            kind = response.WhichOneof("Type")
            if kind == "block":
                yield response.block.SerializeToString()
            elif kind == "status":
                if response.status == common_pb2.Status.Value("SUCCESS"):
                    return
                raise LedgerError(f"{what} ended with status "
                                  f"{common_pb2.Status.Name(response.status)}")
            else:
                raise LedgerError(f"{what}: unexpected {kind!r} response")
        raise LedgerError(f"{what}: the stream ended without a status")
    except grpc.RpcError as e:
        code = e.code() if isinstance(e, grpc.Call) else None
        details = e.details() if isinstance(e, grpc.Call) else str(e)
        raise LedgerError(f"{what} failed: {code.name if code else 'error'}: "
                          f"{details}") from e
    finally:
        call.cancel()


# --- storing ------------------------------------------------------------------


def _number_of(raw: bytes) -> int:
    number: int = common_pb2.Block.FromString(raw).header.number
    return number


def _write_block(directory: Path, number: int, raw: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{number}.block.tmp"
    temporary.write_bytes(raw)
    temporary.replace(directory / f"{number}.block")


def save_blocks(blocks: Iterable[bytes], directory: Path) -> int:
    """Write each raw block to ``directory/<number>.block`` (the number read from
    its header; an existing file of that number is replaced, atomically) and
    return how many were written, so that an auditor can re-verify the chain
    later with ``load_blocks``."""
    count = 0
    for raw in blocks:
        _write_block(Path(directory), _number_of(raw), raw)
        count += 1
    return count


def load_blocks(directory: Path) -> Iterator[bytes]:
    """The raw blocks saved in ``directory`` (files ``<number>.block``) in block
    number order; other files are ignored. Gaps are not filled in: give the
    result to ``verify_chain``, which reports a missing block by its number."""
    numbered = sorted((int(m.group(1)), path) for path in Path(directory).iterdir()
                      if (m := _BLOCK_FILE.match(path.name)))
    for _, path in numbered:
        yield path.read_bytes()


# --- unpacking ----------------------------------------------------------------


class _Malformed(ValueError):
    """A part of a block or transaction that does not parse as it should."""


def _parse(message_type: Any, data: bytes, what: str) -> Any:
    try:
        return message_type.FromString(data)
    except DecodeError as e:
        raise _Malformed(f"{what} does not parse: {e}") from e


@dataclass
class _Endorsed:
    """The parts of an endorser transaction's single action."""

    action_header: bytes
    proposal_payload: bytes
    response_payload: bytes
    proposal_hash: bytes
    endorsements: list[proposal_response_pb2.Endorsement]
    action: proposal_pb2.ChaincodeAction
    chaincode: str
    function: str

    @property
    def event(self) -> chaincode_event_pb2.ChaincodeEvent | None:
        if not self.action.events:
            return None
        event: chaincode_event_pb2.ChaincodeEvent = _parse(
            chaincode_event_pb2.ChaincodeEvent, self.action.events, "chaincode event")
        return event

    def writes(self) -> Iterator[tuple[str, str, bytes, bool]]:
        """(namespace, collection, key or key hash, is_delete) of the write set."""
        results = _parse(rwset_pb2.TxReadWriteSet, self.action.results, "rwset")
        for ns in results.ns_rwset:
            kv = _parse(kv_rwset_pb2.KVRWSet, ns.rwset, f"rwset of {ns.namespace}")
            for write in kv.writes:
                yield ns.namespace, "", write.key.encode(), write.is_delete
            for collection in ns.collection_hashed_rwset:
                hashed = _parse(kv_rwset_pb2.HashedRWSet, collection.hashed_rwset,
                                f"hashed rwset of {collection.collection_name}")
                for hw in hashed.hashed_writes:
                    yield (ns.namespace, collection.collection_name, hw.key_hash,
                           hw.is_delete)


@dataclass
class _Tx:
    index: int
    envelope: common_pb2.Envelope
    channel_header: common_pb2.ChannelHeader
    signature_header: common_pb2.SignatureHeader
    channel_header_bytes: bytes
    endorsed: _Endorsed | None = None
    config: configtx_pb2.ConfigEnvelope | None = None

    @property
    def tx_id(self) -> str | None:
        return str(self.channel_header.tx_id) or None


def _unpack_endorsed(data: bytes) -> _Endorsed:
    tx = _parse(transaction_pb2.Transaction, data, "transaction")
    if len(tx.actions) != 1:
        raise _Malformed(f"transaction has {len(tx.actions)} actions (Fabric "
                         "accepts exactly one)")
    act = tx.actions[0]
    cap = _parse(transaction_pb2.ChaincodeActionPayload, act.payload,
                 "chaincode action payload")
    prp = _parse(proposal_response_pb2.ProposalResponsePayload,
                 cap.action.proposal_response_payload, "proposal response payload")
    action = _parse(proposal_pb2.ChaincodeAction, prp.extension, "chaincode action")
    cpp = _parse(proposal_pb2.ChaincodeProposalPayload, cap.chaincode_proposal_payload,
                 "chaincode proposal payload")
    spec = _parse(chaincode_pb2.ChaincodeInvocationSpec, cpp.input,
                  "chaincode invocation spec").chaincode_spec
    args = list(spec.input.args)
    return _Endorsed(
        action_header=bytes(act.header),
        proposal_payload=bytes(cap.chaincode_proposal_payload),
        response_payload=bytes(cap.action.proposal_response_payload),
        proposal_hash=bytes(prp.proposal_hash),
        endorsements=list(cap.action.endorsements), action=action,
        chaincode=spec.chaincode_id.name or action.chaincode_id.name,
        function=args[0].decode("utf-8", "replace") if args else "")


def _unpack_tx(raw: bytes, index: int) -> _Tx:
    envelope = _parse(common_pb2.Envelope, raw, "envelope")
    payload = _parse(common_pb2.Payload, envelope.payload, "payload")
    tx = _Tx(index, envelope,
             _parse(common_pb2.ChannelHeader, payload.header.channel_header,
                    "channel header"),
             _parse(common_pb2.SignatureHeader, payload.header.signature_header,
                    "signature header"), bytes(payload.header.channel_header))
    if tx.channel_header.type == _ENDORSER_TRANSACTION:
        tx.endorsed = _unpack_endorsed(payload.data)
    elif tx.channel_header.type == _CONFIG:
        tx.config = _parse(configtx_pb2.ConfigEnvelope, payload.data, "config envelope")
    return tx


def _tx_filter(block: common_pb2.Block) -> bytes:
    metadata = block.metadata.metadata
    return bytes(metadata[_TRANSACTIONS_FILTER]) if len(metadata) > \
        _TRANSACTIONS_FILTER else b""


def _signatures(block: common_pb2.Block) -> common_pb2.Metadata:
    metadata = block.metadata.metadata
    raw = metadata[_SIGNATURES] if len(metadata) > _SIGNATURES else b""
    found: common_pb2.Metadata = _parse(common_pb2.Metadata, raw, "signatures metadata")
    return found


# --- describing ---------------------------------------------------------------


def _certificate(serialized: bytes) -> tuple[str, x509.Certificate | None]:
    try:
        identity = identities_pb2.SerializedIdentity.FromString(serialized)
    except DecodeError:
        return "", None
    try:
        return identity.mspid, x509.load_pem_x509_certificate(identity.id_bytes)
    except ValueError:
        return identity.mspid, None


def _common_name(cert: x509.Certificate | None) -> str:
    if cert is None:
        return ""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _who(serialized: bytes) -> dict[str, str]:
    msp_id, cert = _certificate(serialized)
    return {"msp_id": msp_id, "cn": _common_name(cert)}


def _time(timestamp: Timestamp) -> str:
    return datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9,
                                  UTC).isoformat()


def _config_msps(config: configtx_pb2.Config) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for section in ("Orderer", "Application"):
        group = config.channel_group.groups.get(section)
        if group is not None:
            out[section.lower()] = sorted(
                msp.name for msp in _fabric_msps(group))
    return out


def _describe_tx(raw: bytes, index: int, code: int | None) -> dict[str, Any]:
    validation = (transaction_pb2.TxValidationCode.Name(code)
                  if code in transaction_pb2.TxValidationCode.values() else
                  "UNKNOWN" if code is None else str(code))
    try:
        tx = _unpack_tx(raw, index)
    except _Malformed as e:
        return {"index": index, "validation": validation, "error": str(e)}
    header = tx.channel_header
    out: dict[str, Any] = {
        "index": index, "tx_id": header.tx_id,
        "type": common_pb2.HeaderType.Name(header.type)
        if header.type in common_pb2.HeaderType.values() else str(header.type),
        "channel": header.channel_id,
        "creator": _who(tx.signature_header.creator),
        "timestamp": _time(header.timestamp), "validation": validation}
    if tx.config is not None:
        out["config"] = {"sequence": tx.config.config.sequence,
                         "msps": _config_msps(tx.config.config)}
    if tx.endorsed is not None:
        endorsed = tx.endorsed
        event = endorsed.event
        out.update({
            "chaincode": endorsed.chaincode, "function": endorsed.function,
            "endorsers": [_who(e.endorser) for e in endorsed.endorsements],
            "event": event.event_name if event is not None else None,
            "writes": [{"namespace": ns if not coll else f"{ns}/{coll}",
                        "key": key.decode("utf-8", "replace") if not coll
                        else key.hex(), "is_delete": deleted}
                       for ns, coll, key, deleted in endorsed.writes()]})
    return out


def describe_block(raw: bytes) -> dict[str, Any]:
    """An auditor's JSON-serialisable view of one raw block: its number,
    ``previous_hash``, ``data_hash`` and header ``hash`` (hex), the orderer
    signers (MSP id and certificate subject) and the last config block it names,
    and per transaction its index, tx id, header type, channel, creator (MSP id
    and subject CN), timestamp, validation code name (from the peer's
    TRANSACTIONS_FILTER), and for endorser transactions the chaincode name,
    function (``args[0]``), endorsers (MSP id and CN), the chaincode event name
    and the write set (namespace, key, is_delete); a config transaction shows its
    sequence and MSPs. Nothing is verified here: that is ``verify_chain``'s job."""
    block = _parse(common_pb2.Block, raw, "block")
    codes = _tx_filter(block)
    signers = []
    last_config = None
    try:
        signatures = _signatures(block)
        for signature in signatures.signatures:
            header = _parse(common_pb2.SignatureHeader, signature.signature_header,
                            "signature header")
            msp_id, cert = _certificate(header.creator)
            signers.append({"msp_id": msp_id,
                            "subject": cert.subject.rfc4514_string() if cert else ""})
        if signatures.value:
            last_config = _parse(common_pb2.OrdererBlockMetadata, signatures.value,
                                 "orderer block metadata").last_config.index
    except _Malformed:
        pass
    return {
        "number": block.header.number,
        "previous_hash": block.header.previous_hash.hex(),
        "data_hash": block.header.data_hash.hex(),
        "hash": _header_hash(block.header).hex(),
        "orderer_signers": signers, "last_config": last_config,
        "transactions": [_describe_tx(entry, i, codes[i] if i < len(codes) else None)
                         for i, entry in enumerate(block.data.data)]}


# --- trust --------------------------------------------------------------------


class _Untrusted(ValueError):
    """An identity the channel's MSPs do not vouch for."""


def _organisational_units(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in
            cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def _pem_certificates(entries: Iterable[bytes], what: str) -> tuple[x509.Certificate,
                                                                     ...]:
    certs: list[x509.Certificate] = []
    for entry in entries:
        try:
            certs.extend(x509.load_pem_x509_certificates(entry))
        except ValueError as e:
            raise _Malformed(f"{what} is not a PEM certificate: {e}") from e
    return tuple(certs)


@dataclass(frozen=True)
class _Msp:
    """One organisation's certificate authorities, from a channel config."""

    msp_id: str
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    revoked: frozenset[tuple[bytes, int]]  # (issuer DER, serial number)
    peer_ou: str | None  # None: NodeOUs off, any member counts as a peer

    @classmethod
    def of(cls, config: msp_config_pb2.FabricMSPConfig) -> _Msp:
        revoked: set[tuple[bytes, int]] = set()
        for pem in config.revocation_list:
            try:
                crl = x509.load_pem_x509_crl(pem)
            except ValueError as e:
                raise _Malformed(f"a CRL of {config.name} does not parse: {e}") from e
            revoked.update((crl.issuer.public_bytes(), r.serial_number) for r in crl)
        node_ous = config.fabric_node_ous
        peer_ou = (node_ous.peer_ou_identifier.organizational_unit_identifier or "peer"
                   ) if node_ous.enable else None
        return cls(config.name,
                   _pem_certificates(config.root_certs, f"a root CA of {config.name}"),
                   _pem_certificates(config.intermediate_certs,
                                     f"an intermediate CA of {config.name}"),
                   frozenset(revoked), peer_ou)

    def check_chain(self, cert: x509.Certificate) -> None:
        """Raise ``_Untrusted`` unless ``cert`` chains to one of the roots through
        the intermediates, no certificate on the way being revoked."""
        if cert in self.roots:
            raise _Untrusted(f"{self.msp_id}: a root CA certificate is not an identity")
        current = cert
        for _ in range(_MAX_CHAIN):
            if (current.issuer.public_bytes(), current.serial_number) in self.revoked:
                raise _Untrusted(f"{self.msp_id}: certificate "
                                 f"{current.subject.rfc4514_string()} is revoked")
            for parent in (*self.intermediates, *self.roots):
                if parent.subject != current.issuer:
                    continue
                try:
                    current.verify_directly_issued_by(parent)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                break
            else:
                raise _Untrusted(
                    f"certificate {current.subject.rfc4514_string()} is not issued by "
                    f"a CA of {self.msp_id} (issuer {current.issuer.rfc4514_string()})")
            if parent in self.roots:
                return
            current = parent
        raise _Untrusted(f"{self.msp_id}: certificate chain longer than {_MAX_CHAIN}")


@dataclass(frozen=True)
class _Signer:
    """A trusted identity: its MSP and certificate."""

    msp: _Msp
    cert: x509.Certificate
    key: ec.EllipticCurvePublicKey

    @property
    def name(self) -> str:
        return f"{self.msp.msp_id} {_common_name(self.cert)!r}"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """ECDSA/SHA-256 as Fabric's MSP checks it: high-S signatures are refused."""
        try:
            _, s = decode_dss_signature(signature)
        except ValueError:
            return False
        if isinstance(self.key.curve, ec.SECP256R1) and s > P256_ORDER // 2:
            return False
        try:
            self.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _fabric_msps(group: configtx_pb2.ConfigGroup) -> Iterator[
        msp_config_pb2.FabricMSPConfig]:
    for name, org in sorted(group.groups.items()):
        value = org.values.get("MSP")
        if value is None:
            continue
        config = _parse(msp_config_pb2.MSPConfig, value.value, f"MSP of {name}")
        if config.type != 0:  # 0 = FABRIC (X.509); 1 = IDEMIX
            raise _Malformed(f"MSP of {name} has type {config.type}: only X.509 "
                             "(FABRIC) MSPs can be verified")
        yield _parse(msp_config_pb2.FabricMSPConfig, config.config,
                     f"FabricMSPConfig of {name}")


@dataclass
class _Trust:
    """The MSPs of one channel config: whom blocks and transactions may come from."""

    sequence: int
    msps: dict[str, _Msp]
    orderer_msps: frozenset[str]
    _signers: dict[bytes, _Signer] = field(default_factory=dict)

    @classmethod
    def of(cls, config: configtx_pb2.Config) -> _Trust:
        msps: dict[str, _Msp] = {}
        orderers: set[str] = set()
        for section in ("Orderer", "Application"):
            group = config.channel_group.groups.get(section)
            if group is None:
                continue
            for msp_config in _fabric_msps(group):
                msps[msp_config.name] = _Msp.of(msp_config)
                if section == "Orderer":
                    orderers.add(msp_config.name)
        if not orderers:
            raise _Malformed("the channel config has no orderer organisation")
        return cls(config.sequence, msps, frozenset(orderers))

    def signer(self, serialized: bytes) -> _Signer:
        """The trusted identity behind a ``SerializedIdentity``; ``_Untrusted``
        names why not. Verified identities are remembered for this config."""
        known = self._signers.get(serialized)
        if known is not None:
            return known
        try:
            identity = identities_pb2.SerializedIdentity.FromString(serialized)
        except DecodeError as e:
            raise _Untrusted(f"identity does not parse: {e}") from e
        msp = self.msps.get(identity.mspid)
        if msp is None:
            raise _Untrusted(f"MSP {identity.mspid!r} is not in the channel config "
                             f"(known: {', '.join(sorted(self.msps))})")
        try:
            cert = x509.load_pem_x509_certificate(identity.id_bytes)
        except ValueError as e:
            raise _Untrusted(
                f"{identity.mspid}: certificate does not parse: {e}") from e
        msp.check_chain(cert)
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise _Untrusted(f"{identity.mspid}: certificate key is not ECDSA")
        signer = _Signer(msp, cert, key)
        self._signers[serialized] = signer
        return signer


# --- verifying ----------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, message: str, block: int, tx_id: str | None = None) -> None:
        super().__init__(message)
        self.block = block
        self.tx_id = tx_id


class _Fault(Exception):
    """A transaction check that failed; the block turns it into ``_Bad``."""


@dataclass
class _Verifier:
    """State carried from block to block while a chain is verified."""

    cities: frozenset[str]
    chaincode: str
    number: int = 0
    previous_hash: bytes = b""
    channel: str = ""
    trust: _Trust | None = None
    last_config: int = 0
    tx_ids: set[str] = field(default_factory=set)
    transactions: int = 0
    events: int = 0

    @property
    def need(self) -> int:
        return len(self.cities) // 2 + 1

    def check(self, raw: bytes) -> None:
        number = self.number
        try:
            block = common_pb2.Block.FromString(raw)
        except DecodeError as e:
            raise _Bad(f"block does not parse: {e}", number) from e
        header = block.header
        if header.number != number:
            raise _Bad(f"block number {header.number} where block {number} was "
                       "expected", number)
        if number == 0:
            self._genesis(block)
        else:
            if header.previous_hash != self.previous_hash:
                raise _Bad("previous_hash is not the hash of block "
                           f"{number - 1}'s header", number)
            self._orderer_signatures(block)
            self._transactions(block)
        self.previous_hash = _header_hash(header)
        self.number += 1

    def _genesis(self, block: common_pb2.Block) -> None:
        if len(block.data.data) != 1:
            raise _Bad("the genesis block must hold exactly one config transaction", 0)
        if _data_hash(block.data.data) != block.header.data_hash:
            raise _Bad("data_hash is not the hash of the block's transactions", 0)
        try:
            tx = _unpack_tx(block.data.data[0], 0)
            if tx.config is None:
                raise _Malformed("the genesis block's transaction is not a config")
            self.trust = _Trust.of(tx.config.config)
        except _Malformed as e:
            raise _Bad(f"genesis config: {e}", 0) from e
        self.channel = tx.channel_header.channel_id
        self.transactions += 1

    def _orderer_signatures(self, block: common_pb2.Block) -> None:
        trust = self.trust
        assert trust is not None
        number = block.header.number
        try:
            metadata = _signatures(block)
        except _Malformed as e:
            raise _Bad(str(e), number) from e
        if not metadata.signatures:
            raise _Bad("the block carries no orderer signature", number)
        signed_header = _header_bytes(block.header)
        for signature in metadata.signatures:
            try:
                header = _parse(common_pb2.SignatureHeader, signature.signature_header,
                                "orderer signature header")
                signer = trust.signer(header.creator)
            except (_Malformed, _Untrusted) as e:
                raise _Bad(f"orderer signature: {e}", number) from e
            if signer.msp.msp_id not in trust.orderer_msps:
                raise _Bad(f"block signed by {signer.name}, not by an orderer "
                           f"organisation ({', '.join(sorted(trust.orderer_msps))})",
                           number)
            if not signer.verifies(signature.signature, metadata.value +
                                   signature.signature_header + signed_header):
                raise _Bad(f"orderer signature of {signer.name} does not verify",
                           number)
        try:
            named = _parse(common_pb2.OrdererBlockMetadata, metadata.value,
                           "orderer block metadata").last_config.index
        except _Malformed as e:
            raise _Bad(str(e), number) from e
        is_config = self._is_config_block(block)
        expected = number if is_config else self.last_config
        if named != expected:
            raise _Bad(f"the block names block {named} as the last config block; it "
                       f"is block {expected}", number)

    @staticmethod
    def _is_config_block(block: common_pb2.Block) -> bool:
        if len(block.data.data) != 1:
            return False
        try:
            return _unpack_tx(block.data.data[0], 0).channel_header.type == _CONFIG
        except _Malformed:
            return False

    def _transactions(self, block: common_pb2.Block) -> None:
        number = block.header.number
        data = block.data.data
        data_ok = _data_hash(data) == block.header.data_hash
        codes = _tx_filter(block)
        if data_ok and len(codes) != len(data):
            raise _Bad(f"TRANSACTIONS_FILTER has {len(codes)} codes for "
                       f"{len(data)} transactions", number)
        new_trust: _Trust | None = None
        block_tx_ids: set[str] = set()
        for index, raw in enumerate(data):
            code = codes[index] if index < len(codes) else _VALID
            tx_id: str | None = None
            try:
                tx = _unpack_tx(raw, index)
                tx_id = tx.tx_id
                self._check_form(tx, raw)
            except (_Malformed, _Fault) as e:
                if code in _REJECTED_UNCHECKED:
                    self.transactions += 1
                    continue
                raise _Bad(f"transaction {index}: {e}", number, tx_id) from e
            try:
                if code == _VALID:
                    if tx_id is not None and (tx_id in self.tx_ids or
                                              tx_id in block_tx_ids):
                        raise _Fault("this tx id was already used earlier in the "
                                     "chain, yet the transaction is marked VALID")
                    if tx.endorsed is not None:
                        self._check_endorsed(tx, tx.endorsed)
                    elif tx.config is not None:
                        if len(data) != 1:
                            raise _Fault("a config transaction shares its block")
                        new_trust = self._check_config(tx, tx.config)
                    else:
                        raise _Fault("VALID transaction of unsupported type "
                                     f"{tx.channel_header.type}")
            except (_Malformed, _Fault, _Untrusted) as e:
                raise _Bad(f"transaction {index}: {e}", number, tx_id) from e
            if tx_id is not None:
                block_tx_ids.add(tx_id)
            self.transactions += 1
        if not data_ok:
            raise _Bad("data_hash is not the hash of the block's transactions", number)
        self.tx_ids |= block_tx_ids
        if new_trust is not None:
            self.trust = new_trust
            self.last_config = number

    def _check_form(self, tx: _Tx, raw: bytes) -> None:
        """What a peer checks before looking at endorsements: the envelope is in
        canonical form, on this channel, signed by a trusted creator, and an
        endorser transaction's tx id and proposal hash are right."""
        trust = self.trust
        assert trust is not None
        envelope = tx.envelope
        if common_pb2.Envelope(payload=envelope.payload, signature=envelope.signature
                               ).SerializeToString() != raw:
            raise _Fault("envelope is not in canonical form (extra or reordered bytes)")
        if tx.channel_header.channel_id != self.channel:
            raise _Fault(f"transaction is for channel {tx.channel_header.channel_id!r}"
                         f", not {self.channel!r}")
        if tx.channel_header.epoch != 0:
            raise _Fault(f"epoch is {tx.channel_header.epoch}, Fabric requires 0")
        creator = tx.signature_header.creator
        if not creator or not tx.signature_header.nonce:
            raise _Fault("signature header lacks its creator or nonce")
        try:
            signer = trust.signer(creator)
        except _Untrusted as e:
            raise _Fault(f"creator not trusted: {e}") from e
        if not signer.verifies(envelope.signature, envelope.payload):
            raise _Fault(f"creator signature of {signer.name} does not verify")
        if tx.endorsed is None:
            return
        if tx.tx_id != _tx_id(tx.signature_header.nonce, creator):
            raise _Fault("tx id is not SHA-256(nonce ‖ creator)")
        expected = hashlib.sha256(tx.channel_header_bytes +
                                  tx.endorsed.action_header +
                                  tx.endorsed.proposal_payload).digest()
        if tx.endorsed.proposal_hash != expected:
            raise _Fault("the endorsed proposal hash is not that of this proposal")

    def _check_endorsed(self, tx: _Tx, endorsed: _Endorsed) -> None:
        trust = self.trust
        assert trust is not None
        if not endorsed.endorsements:
            raise _Fault("a VALID endorser transaction without endorsements")
        cities: set[str] = set()
        for position, endorsement in enumerate(endorsed.endorsements):
            try:
                endorser = trust.signer(endorsement.endorser)
            except _Untrusted as e:
                raise _Fault(f"endorser {position} not trusted: {e}") from e
            if not endorser.verifies(endorsement.signature, endorsed.response_payload
                                     + endorsement.endorser):
                raise _Fault(f"endorsement signature of {endorser.name} does not "
                             "verify")
            peer_ou = endorser.msp.peer_ou
            if endorser.msp.msp_id in self.cities and (
                    peer_ou is None or peer_ou in _organisational_units(endorser.cert)):
                cities.add(endorser.msp.msp_id)
        namespaces = {endorsed.chaincode, *(ns for ns, _, _, _ in endorsed.writes())}
        if self.chaincode in namespaces and len(cities) < self.need:
            got = ", ".join(sorted(cities)) or "no member city"
            raise _Fault(
                f"endorsement policy not met: peers of {got}; {self.chaincode} needs "
                f"{self.need} of {', '.join(sorted(self.cities))} (MAJORITY)")
        event = endorsed.event
        if event is None:
            return
        if event.tx_id != tx.tx_id:
            raise _Fault(f"chaincode event carries tx id {event.tx_id!r}, not the "
                         "transaction's own")
        if event.chaincode_id != endorsed.chaincode:
            raise _Fault(f"chaincode event is from {event.chaincode_id!r}, the "
                         f"transaction invoked {endorsed.chaincode!r}")
        if endorsed.chaincode != self.chaincode:
            return
        try:
            domain_events = json.loads(event.payload)
        except ValueError as e:
            raise _Fault(f"chaincode event payload is not JSON: {e}") from e
        if not isinstance(domain_events, list) or not all(
                isinstance(e, dict) and isinstance(e.get("type"), str)
                for e in domain_events):
            raise _Fault("chaincode event payload is not a JSON array of domain "
                         "events (objects with a type)")
        self.events += len(domain_events)

    def _check_config(self, tx: _Tx, envelope: configtx_pb2.ConfigEnvelope) -> _Trust:
        """A channel update: its signatures come from the current members, its
        sequence follows, and its MSPs become the trust for later blocks."""
        trust = self.trust
        assert trust is not None
        if envelope.config.sequence != trust.sequence + 1:
            raise _Fault(f"config sequence {envelope.config.sequence} does not follow "
                         f"{trust.sequence}")
        update = envelope.last_update
        if update.payload:
            payload = _parse(common_pb2.Payload, update.payload, "config update")
            submitter = _parse(common_pb2.SignatureHeader,
                               payload.header.signature_header,
                               "config update signature header").creator
            signer = trust.signer(submitter)
            if not signer.verifies(update.signature, update.payload):
                raise _Fault(f"config update signature of {signer.name} does not "
                             "verify")
            update_envelope = _parse(configtx_pb2.ConfigUpdateEnvelope, payload.data,
                                     "config update envelope")
            for signature in update_envelope.signatures:
                header = _parse(common_pb2.SignatureHeader, signature.signature_header,
                                "config signature header")
                signer = trust.signer(header.creator)
                if not signer.verifies(signature.signature, signature.signature_header
                                       + update_envelope.config_update):
                    raise _Fault(f"config update signature of {signer.name} does "
                                 "not verify")
        return _Trust.of(envelope.config)


def verify_chain(blocks: Iterable[bytes], save_dir: Path | None = None,
                 progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify a channel's chain offline, from its genesis config block (block 0)
    onward, and report the first bad block and transaction. Per block: numbers
    consecutive from 0, ``previous_hash`` the hash of the previous header, the
    orderer signatures by orderer-organisation identities of the current config,
    the last-config index, ``data_hash``; per transaction: canonical envelope,
    channel, creator certificate chain and signature, tx id, proposal hash; for
    VALID endorser transactions also unique tx id, every endorsement signature,
    the consortium chaincode's policy (peers of a majority of member cities), the
    chaincode event's tx id and its JSON array of domain events; a VALID config
    transaction's signatures, after which its MSPs apply. Each block is written
    to ``save_dir`` as ``<number>.block`` before it is checked (so a bad block is
    kept as evidence), and ``progress(number)`` is called after it passes. The
    report's ``blocks``, ``transactions`` and ``events`` count what passed."""
    consortium = load_consortium()
    verifier = _Verifier(frozenset(city.msp_id for city in consortium.cities),
                         consortium.chaincode)

    def report(error: str | None = None, block: int | None = None,
               tx_id: str | None = None) -> VerifyReport:
        return VerifyReport(error is None, verifier.number, verifier.transactions,
                            verifier.events, error, block, tx_id)

    try:
        for raw in blocks:
            if save_dir is not None:
                _write_block(Path(save_dir), verifier.number, raw)
            verifier.check(raw)
            if progress is not None:
                progress(verifier.number - 1)
    except _Bad as bad:
        return report(str(bad), bad.block, bad.tx_id)
    except (_Malformed, _Untrusted, DecodeError, ValueError, IndexError) as e:
        return report(f"block is malformed: {e}", verifier.number)
    if verifier.number == 0:
        return report("no blocks: a chain starts with its genesis block 0", 0)
    return report()


__all__ = ["deliver_blocks", "describe_block", "load_blocks", "save_blocks",
           "verify_chain"]
