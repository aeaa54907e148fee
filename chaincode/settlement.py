"""Settlement (结算) of a cleared day: each member city's statement, confirmed
with the city's SM2 signature, then completed by the center with the payment's
reference; and the cities' settlement keys."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from pydantic import Field

from chaincode.domain import (
    ClearingRun,
    Settlement,
    SettlementKey,
    settlement_statement,
)
from chaincode.encoding import canonical_json, sm3_hex
from chaincode.errors import Conflict, InvalidArgument, NotFound, Unauthorized
from chaincode.identity import Role
from chaincode.registry import (
    Args,
    Context,
    Day,
    Hash,
    Name,
    Text,
    command,
    query,
    state_of,
)
from ledger.crypto import CryptoError, get_backend, public_key_from_pem
from ledger.crypto import signature_from_der as _rs
from network.consortium import load_consortium

PemText = Annotated[str, Field(min_length=1, max_length=2000)]
# base64 of a DER SM2 signature (at most 72 bytes)
SignatureB64 = Annotated[str, Field(min_length=8, max_length=200,
                                    pattern=r"^[A-Za-z0-9+/]+={0,2}$")]


class SettlementKeyArgs(Args):
    public_key_pem: PemText


class ConfirmSettlementArgs(Args):
    business_day: Day
    statement_sm3: Hash
    signature: SignatureB64


class CompleteSettlementArgs(Args):
    business_day: Day
    city: Name
    payment_reference: Text


class StatementArgs(Args):
    business_day: Day
    city: Name


def _member(city: str, field: str) -> None:
    cities = load_consortium().city_names
    if city not in cities:
        raise InvalidArgument(f"{city!r} is not a member city ({', '.join(cities)})",
                              field)


def _public_key(pem_text: str) -> bytes:
    try:
        return public_key_from_pem(pem_text.encode())
    except CryptoError as e:
        raise InvalidArgument(f"not an SM2 public key in PEM: {e}",
                              "public_key_pem") from None


@command("RegisterSettlementKey", SettlementKeyArgs, Role.CITY_ADMIN)
def register_settlement_key(ctx: Context, a: SettlementKeyArgs) -> dict[str, Any]:
    """A member city registers the SM2 key it signs statements with; registering
    again rotates it (statements confirmed before keep their signatures)."""
    city = ctx.caller.city
    _member(city, "public_key_pem")
    public = _public_key(a.public_key_pem)
    fingerprint = sm3_hex(public)
    key_id = SettlementKey.create_id(city)
    by = str(ctx.caller)
    if ctx.session.exists(key_id):
        key: SettlementKey = ctx.session.get(key_id, SettlementKey, "key")
        if key.key_sm3 == fingerprint:
            raise Conflict(f"this key is already {city}'s settlement key",
                           field="public_key_pem")
        key.rotate(public_key=public.hex(), key_sm3=fingerprint, registered_by=by)
    else:
        key = SettlementKey(city=city, public_key=public.hex(), key_sm3=fingerprint,
                            registered_by=by)
    ctx.session.save(key)
    return {"city": city, "key_sm3": fingerprint, "version": key.version}


def _run(ctx: Context, day: str) -> ClearingRun:
    run_id = ClearingRun.create_id(day)
    if not ctx.session.exists(run_id):
        raise NotFound(f"business day {day} is not cleared yet", field="business_day")
    run: ClearingRun = ctx.session.get(run_id, ClearingRun, "clearing run")
    return run


def statement_of(ctx: Context, day: str, city: str) -> tuple[dict[str, Any], str]:
    """The city's statement of a cleared day and its SM3 (as the run records
    it; a run from before statements has none)."""
    run = _run(ctx, day)
    recorded = run.statements.get(city)
    if recorded is None:
        raise NotFound(f"the clearing run of {day} has no statement for {city} "
                       "(it predates settlement statements)", field="business_day")
    return settlement_statement(state_of(run), city), recorded


@command("ConfirmSettlement", ConfirmSettlementArgs, Role.CITY_ADMIN)
def confirm_settlement(ctx: Context, a: ConfirmSettlementArgs) -> dict[str, Any]:
    """A city confirms its statement of a cleared day: the SM3 it names must be
    the one the run recorded, and the signature (SM2, GM/T 0003 default user
    id, over the statement's canonical JSON) must verify with the city's
    registered settlement key."""
    city = ctx.caller.city
    _member(city, "business_day")
    statement, recorded = statement_of(ctx, a.business_day, city)
    if a.statement_sm3 != recorded:
        raise Conflict(f"statement_sm3 {a.statement_sm3} is not the SM3 of {city}'s "
                       f"statement of {a.business_day} ({recorded})",
                       field="statement_sm3")
    settlement_id = Settlement.create_id(a.business_day, city)
    if ctx.session.exists(settlement_id):
        raise Conflict(f"{city}'s statement of {a.business_day} is already "
                       "confirmed", field="business_day")
    key_id = SettlementKey.create_id(city)
    if not ctx.session.exists(key_id):
        raise Conflict(f"{city} has no settlement key (RegisterSettlementKey first)",
                       field="signature")
    key: SettlementKey = ctx.session.get(key_id, SettlementKey, "key")
    try:
        signature = _rs(base64.b64decode(a.signature, validate=True))
    except (ValueError, CryptoError):
        raise InvalidArgument("not a base64 DER SM2 signature", "signature") from None
    if not get_backend().sm2_verify(bytes.fromhex(key.public_key),
                                    canonical_json(statement), signature):
        raise Unauthorized(f"the signature does not verify with {city}'s settlement "
                           f"key {key.key_sm3[:16]}… over the statement",
                           "signature")
    settlement = Settlement(business_day=a.business_day, city=city,
                            statement_sm3=recorded,
                            position_fen=statement["position_fen"],
                            signature=a.signature, key_sm3=key.key_sm3,
                            confirmed_by=str(ctx.caller))
    ctx.session.save(settlement)
    return {"id": str(settlement.id), "business_day": a.business_day, "city": city,
            "statement_sm3": recorded, "status": settlement.status}


@command("CompleteSettlement", CompleteSettlementArgs, Role.CENTER_ADMIN)
def complete_settlement(ctx: Context, a: CompleteSettlementArgs) -> dict[str, Any]:
    """The center records that the funds of a confirmed statement have moved,
    with the payment's reference."""
    _member(a.city, "city")
    _run(ctx, a.business_day)
    settlement_id = Settlement.create_id(a.business_day, a.city)
    if not ctx.session.exists(settlement_id):
        raise Conflict(f"{a.city} has not confirmed its statement of "
                       f"{a.business_day}", field="city")
    settlement: Settlement = ctx.session.get(settlement_id, Settlement, "settlement")
    settlement.complete(a.payment_reference, str(ctx.caller))
    ctx.session.save(settlement)
    return {"id": str(settlement.id), "business_day": a.business_day,
            "city": a.city, "status": settlement.status}


@query("GetSettlementStatement", StatementArgs)
def get_statement(ctx: Context, a: StatementArgs) -> dict[str, Any]:
    """A city's statement of a cleared day, its SM3, and its settlement so far."""
    _member(a.city, "city")
    statement, recorded = statement_of(ctx, a.business_day, a.city)
    settlement_id = Settlement.create_id(a.business_day, a.city)
    settlement = (state_of(ctx.session.get(settlement_id, Settlement, "settlement"))
                  if ctx.session.exists(settlement_id) else None)
    return {"statement": statement, "statement_sm3": recorded,
            "settlement": settlement}
