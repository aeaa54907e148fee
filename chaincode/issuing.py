"""Issuing city QR codes (发码): the SM2 issuer keys certified center → city
institution → departments and users (X.509, each step an event with the
certificate's SM3 fingerprint), and the guide URLs codes lead to (URL备案)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from chaincode.domain import CodeBatch, CodeScheme, GuideUrl, IssuerKey, UserCertificate
from chaincode.errors import Conflict, InvalidArgument, NotFound, Unauthorized
from chaincode.identity import Role
from chaincode.registry import (
    QUERIES,
    Args,
    Context,
    Hash,
    IdArgs,
    Text,
    command,
    getter,
    query,
    state_of,
)
from chaincode.stub import prefix_range
from ledger.crypto import CryptoError, x509
from network.consortium import load_consortium

CertificatePem = Annotated[str, Field(min_length=1, max_length=8000)]
Url = Annotated[str, Field(pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?"
                                   r"(/[!-~]*)?$", max_length=500)]

# Pointers to the keys now in effect: ``ik~root`` and ``ik~inst~<city>`` hold a
# fingerprint; ``ikey~<fingerprint>`` lists every key for the trust bundle.
_ROOT, _INSTITUTION, _ALL = "ik~root", "ik~inst~", "ikey~"


class CertifyKeyArgs(Args):
    level: Literal["root", "institution"]
    certificate_pem: CertificatePem


class CertifyUserKeyArgs(Args):
    certificate_pem: CertificatePem


class RevokeKeyArgs(Args):
    fingerprint: Hash
    reason: Text


class FileUrlArgs(Args):
    scheme_id: UUID
    url: Url


class DecideUrlArgs(Args):
    url_id: UUID


class RejectUrlArgs(Args):
    url_id: UUID
    reason: Text


class NoArgs(Args):
    pass


Moment = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
                              json_schema_extra={"format": "date-time"})]


CodeCount = Annotated[int, Field(ge=1, le=1_000_000)]  # codes in one batch
# Every serial of a batch (24 lowercase hex digits, 12 bytes) starts with the
# batch's prefix, so a scan names its batch without a list of serials on chain.
SerialPrefix = Annotated[str, Field(pattern=r"^[0-9a-f]{8}$")]


class CodeBatchArgs(Args):
    scheme_id: UUID
    guide_url_id: UUID
    signer_fingerprint: Hash
    count: CodeCount
    not_before: Moment
    not_after: Moment
    merkle_root: Hash
    serial_prefix: SerialPrefix


def _certificate(pem: str, now: datetime) -> x509.Certificate:
    try:
        cert = x509.load(pem.encode())
    except CryptoError as e:
        raise InvalidArgument(f"not an SM2 X.509 certificate: {e}",
                              "certificate_pem") from None
    if not cert.valid_at(now):
        raise InvalidArgument(
            f"the certificate is valid {cert.not_before.isoformat()} to "
            f"{cert.not_after.isoformat()}, not now ({now.isoformat()})",
            "certificate_pem")
    return cert


def _current(ctx: Context, pointer: str, what: str) -> IssuerKey:
    fingerprint = ctx.stub.get_state(pointer)
    if fingerprint is None:
        raise Conflict(f"there is no {what} key yet (certify it first)",
                       field="certificate_pem")
    key: IssuerKey = ctx.session.get(IssuerKey.create_id(fingerprint.decode()),
                                     IssuerKey, "issuer key")
    return key


def _signed_by(cert: x509.Certificate, issuer: IssuerKey, what: str) -> None:
    parent = x509.load(issuer.certificate.encode())
    if cert.issuer != parent.subject or not cert.signed_by(parent.public_key):
        raise Unauthorized(f"the certificate is not signed by the {what} key "
                           f"{issuer.fingerprint[:16]}…", "certificate_pem")


def _new_certificate(ctx: Context, pem: str) -> x509.Certificate:
    cert = _certificate(pem, ctx.stub.get_tx_timestamp())
    if ctx.session.exists(IssuerKey.create_id(cert.fingerprint)):
        raise Conflict(f"key {cert.fingerprint} is already certified",
                       field="certificate_pem")
    return cert


@command("CertifyIssuerKey", CertifyKeyArgs, Role.CENTER_ADMIN)
def certify_issuer_key(ctx: Context, a: CertifyKeyArgs) -> dict[str, Any]:
    """The center registers its root key (self-signed) and certifies each
    city's institution key (signed by the root). A new root or institution key
    rotates the one before (keys it certified stay valid until revoked)."""
    return _certify(ctx, a.level, _new_certificate(ctx, a.certificate_pem))


@command("CertifyUserKey", CertifyUserKeyArgs, Role.CITY_ADMIN)
def certify_user_key(ctx: Context, a: CertifyUserKeyArgs) -> dict[str, Any]:
    """A city admin certifies a key of its departments or users (an
    end-entity certificate signed by the city's institution key)."""
    return _certify(ctx, "user", _new_certificate(ctx, a.certificate_pem))


def _certify(ctx: Context, level: str, cert: x509.Certificate) -> dict[str, Any]:
    consortium = load_consortium()
    organisation = cert.subject.get("organization_name", "")
    previous: IssuerKey | None = None
    if level == "root":
        if not (cert.is_ca and cert.issuer == cert.subject
                and cert.signed_by(cert.public_key)):
            raise InvalidArgument("a root certificate is a self-signed CA "
                                  "certificate", "certificate_pem")
        city, holder, issuer, pointer = consortium.center.name, "root", "", _ROOT
        if ctx.stub.get_state(_ROOT) is not None:
            previous = _current(ctx, _ROOT, "root")
    elif level == "institution":
        if organisation not in consortium.city_names or not cert.is_ca:
            raise InvalidArgument(
                "an institution certificate is a CA certificate whose subject "
                f"organization is a member city ({', '.join(consortium.city_names)})",
                "certificate_pem")
        root = _current(ctx, _ROOT, "root")
        _signed_by(cert, root, "root")
        city, holder, issuer = organisation, "institution", root.fingerprint
        pointer = f"{_INSTITUTION}{city}"
        if ctx.stub.get_state(pointer) is not None:
            previous = _current(ctx, pointer, f"{city} institution")
    else:
        city = ctx.caller.city
        if organisation != city or cert.is_ca:
            raise InvalidArgument(f"a user certificate is an end-entity "
                                  f"certificate whose subject organization is "
                                  f"{city}", "certificate_pem")
        institution = _current(ctx, f"{_INSTITUTION}{city}", f"{city} institution")
        if institution.status != "active":
            raise Conflict(f"{city}'s institution key is {institution.status}",
                           field="certificate_pem")
        _signed_by(cert, institution, f"{city} institution")
        holder = (cert.subject.get("organizational_unit_name")
                  or cert.subject.get("common_name", "user"))
        issuer, pointer = institution.fingerprint, ""
    key = IssuerKey(fingerprint=cert.fingerprint, level=level, city=city,
                    holder=holder, issuer_fingerprint=issuer,
                    certificate=cert.pem, not_before=cert.not_before.isoformat(),
                    not_after=cert.not_after.isoformat(),
                    certified_by=str(ctx.caller))
    if previous is not None and previous.status == "active":
        previous.rotate(cert.fingerprint, str(ctx.caller))
        ctx.session.save(previous)
    if pointer:
        ctx.stub.put_state(pointer, cert.fingerprint.encode())
    ctx.stub.put_state(f"{_ALL}{cert.fingerprint}", level.encode())
    ctx.session.save(key)
    return {"id": str(key.id), "fingerprint": cert.fingerprint, "level": level,
            "city": city, "holder": holder,
            "rotated": previous.fingerprint if previous else None}


@command("RevokeIssuerKey", RevokeKeyArgs, Role.CENTER_ADMIN, Role.CITY_ADMIN)
def revoke_issuer_key(ctx: Context, a: RevokeKeyArgs) -> dict[str, Any]:
    """The center revokes any key; a city admin its own users' keys. Codes
    signed by a revoked key, or under it, no longer verify."""
    key_id = IssuerKey.create_id(a.fingerprint)
    if not ctx.session.exists(key_id):
        raise NotFound(f"no issuer key has the fingerprint {a.fingerprint}",
                       field="fingerprint")
    key: IssuerKey = ctx.session.get(key_id, IssuerKey, "issuer key")
    if not ctx.caller.is_center and not (key.level == "user"
                                         and key.city == ctx.caller.city):
        raise Unauthorized(f"only the center revokes a {key.level} key of "
                           f"{key.city}", "fingerprint")
    key.revoke(a.reason, str(ctx.caller))
    ctx.session.save(key)
    return {"fingerprint": key.fingerprint, "status": key.status}


@query("GetIssuerKeys", NoArgs)
def get_issuer_keys(ctx: Context, a: NoArgs) -> dict[str, Any]:
    """Every certified key with its certificate and status, by fingerprint."""
    start, end = prefix_range(_ALL)
    keys = [state_of(ctx.session.get(IssuerKey.create_id(k[len(_ALL):]),
                                     IssuerKey, "issuer key"))
            for k, _ in ctx.stub.get_state_by_range(start, end)]
    return {"keys": keys}


# ------------------------------------------------------------------ guide URLs
def _own_approved_scheme(ctx: Context, scheme_id: UUID) -> CodeScheme:
    """The caller department's scheme, once it is approved."""
    scheme: CodeScheme = ctx.session.get(scheme_id, CodeScheme, "code scheme",
                                         "scheme_id")
    if (scheme.city, scheme.department) != (ctx.caller.city,
                                            str(ctx.caller.department)):
        raise Unauthorized(f"scheme {scheme.id} belongs to {scheme.department} of "
                           f"{scheme.city}", "scheme_id")
    if scheme.status != "approved":
        raise Conflict(f"scheme {scheme.id} is {scheme.status}, not approved",
                       field="scheme_id")
    return scheme


@command("FileGuideUrl", FileUrlArgs, Role.DEPARTMENT)
def file_guide_url(ctx: Context, a: FileUrlArgs) -> dict[str, Any]:
    """A department files the URL its approved scheme's codes lead to."""
    scheme = _own_approved_scheme(ctx, a.scheme_id)
    url_id = GuideUrl.create_id(str(scheme.id), a.url)
    if ctx.session.exists(url_id):
        raise Conflict(f"{a.url} is already filed for this scheme", field="url")
    url = GuideUrl(scheme_id=str(scheme.id), city=scheme.city,
                   department=scheme.department, url=a.url,
                   filed_by=str(ctx.caller))
    ctx.session.save(url)
    return {"id": str(url.id), "status": url.status}


def _url_to_decide(ctx: Context, url_id: UUID) -> GuideUrl:
    url: GuideUrl = ctx.session.get(url_id, GuideUrl, "guide URL", "url_id")
    if not (ctx.caller.is_center or ctx.caller.city == url.city):
        raise Unauthorized(f"only {url.city}'s city admin or the center decides "
                           "this guide URL", "url_id")
    return url


# ``gurl~<id>`` marks an approved guide URL, for the trust bundle.
_APPROVED_URL = "gurl~"


@command("ApproveGuideUrl", DecideUrlArgs, Role.CITY_ADMIN, Role.CENTER_ADMIN)
def approve_guide_url(ctx: Context, a: DecideUrlArgs) -> dict[str, Any]:
    url = _url_to_decide(ctx, a.url_id)
    url.approve(str(ctx.caller))
    ctx.stub.put_state(f"{_APPROVED_URL}{url.id}", url.scheme_id.encode())
    ctx.session.save(url)
    return {"id": str(url.id), "status": url.status}


@command("RejectGuideUrl", RejectUrlArgs, Role.CITY_ADMIN, Role.CENTER_ADMIN)
def reject_guide_url(ctx: Context, a: RejectUrlArgs) -> dict[str, Any]:
    url = _url_to_decide(ctx, a.url_id)
    url.reject(a.reason, str(ctx.caller))
    ctx.session.save(url)
    return {"id": str(url.id), "status": url.status}


QUERIES["GetGuideUrl"] = (IdArgs, getter(GuideUrl, "guide URL"))


# ``urev~<scheme id>~<user id>`` holds a revoked user certificate's expiry
_REVOKED_USER = "urev~"
UserId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$",
                              description="a user's pseudonymous id, 16 hex digits")]


class RevokeUserCertArgs(Args):
    scheme_id: UUID
    user_id: UserId
    until: Moment  # the certificate's expiry: then it leaves the bundle
    reason: Text


@command("RevokeUserCertificate", RevokeUserCertArgs, Role.CITY_ADMIN,
         Role.CENTER_ADMIN)
def revoke_user_certificate(ctx: Context, a: RevokeUserCertArgs) -> dict[str, Any]:
    """The scheme's city (or the center) revokes a user's compact certificate
    for dynamic codes, e.g. for a lost phone."""
    scheme: CodeScheme = ctx.session.get(a.scheme_id, CodeScheme, "code scheme",
                                         "scheme_id")
    if not (ctx.caller.is_center or ctx.caller.city == scheme.city):
        raise Unauthorized(f"only {scheme.city}'s city admin or the center revokes "
                           "its users' certificates", "scheme_id")
    if _moment(a.until, "until") <= ctx.stub.get_tx_timestamp():
        raise InvalidArgument("until is the certificate's expiry: a time still "
                              "to come", "until")
    cert_id = UserCertificate.create_id(str(scheme.id), a.user_id)
    if ctx.session.exists(cert_id):
        raise Conflict(f"user {a.user_id}'s certificate of this scheme is already "
                       "revoked", field="user_id")
    cert = UserCertificate(scheme_id=str(scheme.id), city=scheme.city,
                           user_id=a.user_id, until=a.until, reason=a.reason,
                           revoked_by=str(ctx.caller))
    ctx.stub.put_state(f"{_REVOKED_USER}{scheme.id}~{a.user_id}", a.until.encode())
    ctx.session.save(cert)
    return {"id": str(cert.id), "user_id": a.user_id, "until": a.until}


@query("GetTrustMaterial", NoArgs)
def get_trust_material(ctx: Context, a: NoArgs) -> dict[str, Any]:
    """What a terminal needs to verify codes offline: every issuer key (with
    its certificate and status), the user certificates revoked and not yet
    expired, the approved code schemes and their approved guide URLs."""
    keys = get_issuer_keys(ctx, a)["keys"]
    start, end = prefix_range("cover~")  # chaincode.codes: approved schemes
    schemes = [state_of(ctx.session.get(UUID(v.decode()), CodeScheme, "scheme"))
               for _, v in ctx.stub.get_state_by_range(start, end)]
    start, end = prefix_range(_APPROVED_URL)
    urls = [state_of(ctx.session.get(UUID(k[len(_APPROVED_URL):]), GuideUrl,
                                     "guide URL"))
            for k, _ in ctx.stub.get_state_by_range(start, end)]
    now = ctx.stub.get_tx_timestamp()
    start, end = prefix_range(_REVOKED_USER)
    revoked = [{"scheme_id": k.split("~")[1], "user_id": k.split("~")[2],
                "until": v.decode()}
               for k, v in ctx.stub.get_state_by_range(start, end)
               if datetime.fromisoformat(v.decode()) > now]
    return {"keys": keys, "revoked_users": revoked,
            "schemes": [{k: s[k] for k in ("id", "city", "department",
                                           "code_type", "scope", "status")}
                        for s in schemes],
            "urls": [{k: u[k] for k in ("id", "scheme_id", "url", "status")}
                     for u in urls]}


# ------------------------------------------------------------------ code batches
def _moment(value: str, field: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{value!r} is not a UTC time", field) from None


# ``cbp~<scheme id>~<serial prefix>`` -> the batch's id: a prefix names one
# batch of its scheme.
_SERIAL_PREFIX = "cbp~"


@command("IssueCodeBatch", CodeBatchArgs, Role.DEPARTMENT)
def issue_code_batch(ctx: Context, a: CodeBatchArgs) -> dict[str, Any]:
    """A department records static codes it issued for its approved scheme:
    one event per batch (count, validity, signer, guide URL, Merkle root of
    the serials, their common prefix), never one per code."""
    scheme = _own_approved_scheme(ctx, a.scheme_id)
    url: GuideUrl = ctx.session.get(a.guide_url_id, GuideUrl, "guide URL",
                                    "guide_url_id")
    if url.scheme_id != str(scheme.id) or url.status != "approved":
        raise Conflict(f"guide URL {url.url} is {url.status} for scheme "
                       f"{url.scheme_id}; codes lead only to an approved URL of "
                       "their scheme", field="guide_url_id")
    start, end = (_moment(a.not_before, "not_before"),
                  _moment(a.not_after, "not_after"))
    if end <= start:
        raise InvalidArgument("not_after must come after not_before", "not_after")
    key_id = IssuerKey.create_id(a.signer_fingerprint)
    if not ctx.session.exists(key_id):
        raise NotFound(f"no issuer key has the fingerprint {a.signer_fingerprint}",
                       field="signer_fingerprint")
    key: IssuerKey = ctx.session.get(key_id, IssuerKey, "issuer key")
    if key.city != scheme.city or key.level == "root" or key.status != "active":
        raise Conflict(f"key {key.fingerprint[:16]}… is a {key.status} {key.level} "
                       f"key of {key.city}; codes of {scheme.city} are signed by "
                       "an active institution or user key of the city",
                       field="signer_fingerprint")
    if not (datetime.fromisoformat(key.not_before) <= start
            and end <= datetime.fromisoformat(key.not_after)):
        raise InvalidArgument(f"the codes' validity must lie within the key's "
                              f"({key.not_before} to {key.not_after})", "not_after")
    batch_id = CodeBatch.create_id(str(scheme.id), a.merkle_root)
    if ctx.session.exists(batch_id):
        raise Conflict("a batch with these serials is already issued",
                       field="merkle_root")
    prefix_key = f"{_SERIAL_PREFIX}{scheme.id}~{a.serial_prefix}"
    if ctx.stub.get_state(prefix_key) is not None:
        raise Conflict(f"serial prefix {a.serial_prefix} is already used by a "
                       "batch of this scheme; choose another",
                       field="serial_prefix")
    batch = CodeBatch(scheme_id=str(scheme.id), city=scheme.city,
                      department=scheme.department, guide_url_id=str(url.id),
                      signer_fingerprint=key.fingerprint, count=a.count,
                      not_before=a.not_before, not_after=a.not_after,
                      merkle_root=a.merkle_root, serial_prefix=a.serial_prefix,
                      issued_by=str(ctx.caller))
    ctx.stub.put_state(prefix_key, str(batch.id).encode())
    ctx.session.save(batch)
    return {"id": str(batch.id), "count": a.count}
