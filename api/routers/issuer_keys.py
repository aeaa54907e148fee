"""Issuer keys of the city QR code (三级密钥): the center's root and each city's
institution key, certified by the center, and departments' and users' keys,
certified by their city; revocation; the list of every key with its X.509
certificate and status (read from the ledger)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CommandsDep, CurrentIdentity, LedgerDep, RuntimeDep, blocking
from api.problems import COMMAND, COMMAND_ON, QUERY
from api.schemas import CommandResult, Request, Sealed
from chaincode.contract import Hash, Text
from chaincode.issuing import (
    CertificatePem,
    CodeCount,
    Moment,
    SerialPrefix,
    Url,
    UserId,
)

router = APIRouter(prefix="/api/issuer-keys", tags=["code schemes"])
bundle = APIRouter(prefix="/api/trust-bundle", tags=["code schemes"])
urls = APIRouter(prefix="/api/guide-urls", tags=["code schemes"])
schemes = APIRouter(prefix="/api/code-schemes", tags=["code schemes"])


class IssuerKeyCreate(Request):
    level: Literal["root", "institution"]
    certificate_pem: CertificatePem


class UserKeyCreate(Request):
    certificate_pem: CertificatePem


class RevokeRequest(Request):
    reason: Text


class IssuerKeyOut(BaseModel):
    fingerprint: str
    level: str
    city: str
    holder: str
    issuer_fingerprint: str
    certificate: str
    not_before: str
    not_after: str
    status: str
    certified_by: str


class IssuerKeys(BaseModel):
    keys: list[IssuerKeyOut]


class GuideUrlCreate(Request):
    url: Url


class UserRevocation(Request):
    user_id: UserId
    until: Moment
    reason: Text


class CodeBatchCreate(Request):
    guide_url_id: UUID
    signer_fingerprint: Hash
    count: CodeCount
    not_before: Moment
    not_after: Moment
    merkle_root: Hash
    serial_prefix: SerialPrefix = Field(description="8 lowercase hex digits "
                                        "every serial of the batch starts with; "
                                        "unique in the scheme")


@router.post("", status_code=201, responses=COMMAND)
async def certify(body: IssuerKeyCreate, commands: CommandsDep) -> CommandResult:
    """CertifyIssuerKey (center admin): the root key (a self-signed SM2 X.509
    CA certificate) or a city's institution key (a CA certificate signed by
    the root); a new one rotates the one before."""
    return await commands.submit("CertifyIssuerKey", body.model_dump(mode="json"))


@router.post("/users", status_code=201, responses=COMMAND)
async def certify_user(body: UserKeyCreate, commands: CommandsDep) -> CommandResult:
    """CertifyUserKey (city admin): a key of the city's departments or users,
    an end-entity certificate signed by the city's institution key."""
    return await commands.submit("CertifyUserKey", body.model_dump(mode="json"))


@router.post("/{fingerprint}/revoke", responses=COMMAND_ON)
async def revoke(fingerprint: Hash, body: RevokeRequest,
                 commands: CommandsDep) -> CommandResult:
    """RevokeIssuerKey: the center any key, a city admin its users' keys."""
    return await commands.submit("RevokeIssuerKey", {
        "fingerprint": fingerprint, "reason": body.reason})


@router.get("", responses=QUERY)
async def list_keys(p: CurrentIdentity, ledger: LedgerDep) -> IssuerKeys:
    """Every certified key: level, holder, issuer, certificate (PEM), validity
    and status (active, rotated, revoked)."""
    got: dict[str, Any] = await blocking(ledger.ledger_for(p).evaluate,
                                         "GetIssuerKeys", {})
    return IssuerKeys.model_validate(got)


@schemes.post("/{scheme_id}/guide-urls", status_code=201, responses=COMMAND_ON)
async def file_url(scheme_id: UUID, body: GuideUrlCreate,
                   commands: CommandsDep) -> CommandResult:
    """FileGuideUrl (the scheme's department): the https URL its codes lead to;
    the scheme must be approved."""
    return await commands.submit("FileGuideUrl", {"scheme_id": str(scheme_id),
                                                  "url": body.url})


@urls.post("/{url_id}/approve", responses=COMMAND_ON)
async def approve_url(url_id: UUID, commands: CommandsDep) -> CommandResult:
    """ApproveGuideUrl (the scheme's city admin or the center)."""
    return await commands.submit("ApproveGuideUrl", {"url_id": str(url_id)})


@urls.post("/{url_id}/reject", responses=COMMAND_ON)
async def reject_url(url_id: UUID, body: RevokeRequest,
                     commands: CommandsDep) -> CommandResult:
    """RejectGuideUrl (the scheme's city admin or the center), with a reason."""
    return await commands.submit("RejectGuideUrl", {"url_id": str(url_id),
                                                    "reason": body.reason})


@schemes.post("/{scheme_id}/code-batches", status_code=201, responses=COMMAND_ON)
async def issue_codes(scheme_id: UUID, body: CodeBatchCreate,
                      commands: CommandsDep) -> CommandResult:
    """IssueCodeBatch (the scheme's department): static codes issued offline
    (``cityunion qr issue``), recorded as one event: count, validity, signer,
    guide URL, the Merkle root of their serials and the serials' prefix."""
    return await commands.submit("IssueCodeBatch", {
        "scheme_id": str(scheme_id), **body.model_dump(mode="json")})


@schemes.post("/{scheme_id}/user-revocations", status_code=201,
              responses=COMMAND_ON)
async def revoke_user(scheme_id: UUID, body: UserRevocation,
                      commands: CommandsDep) -> CommandResult:
    """RevokeUserCertificate (the scheme's city admin or the center): a user's
    compact certificate for dynamic codes (a lost phone); it is in the trust
    bundle until ``until``, the certificate's expiry."""
    return await commands.submit("RevokeUserCertificate", {
        "scheme_id": str(scheme_id), **body.model_dump(mode="json")})


@bundle.get("", responses=QUERY)
async def trust_bundle(p: CurrentIdentity, ledger: LedgerDep,
                       runtime: RuntimeDep) -> Sealed:
    """The trust bundle terminals verify city QR codes with, offline: every
    issuer key with its certificate and status (revocations included), the
    approved schemes and guide URLs, and the ledger height, sealed with this
    node's SM2 key (pin ``/api/signing-key``). ``cityunion qr trust-bundle``
    writes the same document."""
    from ledger.qrcode.bundle import export

    sealed = await blocking(export, ledger.ledger_for(p), *runtime.signer.pair)
    return Sealed.model_validate(sealed)
