"""Unified identifiers (统一基础标识): register, link, revoke; list and read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import (
    CurrentIdentity,
    LedgerDep,
    PageDep,
    ReadDB,
    scope_city,
    submit,
)
from api.problems import RESPONSES
from api.schemas import CommandResult, Page, Request
from chaincode.contract import Hash, Name, Text
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/identifiers", tags=["identifiers"],
                   responses=RESPONSES)
Kind = Literal["person", "organisation", "object", "place"]
Relation = Literal["attached", "belongs", "contains", "organisation", "person"]
Status = Literal["pending", "active", "revoked"]


class IdentifierCreate(Request):
    kind: Kind
    category: Literal["identity", "spatiotemporal"]
    scheme: Name
    natural_key_hash: Hash = Field(description="hex SM3 of the natural key")
    attributes: str | None = Field(None, max_length=65536, description="base64 "
                                   "SM4 ciphertext made by the client")


class LinkCreate(Request):
    target_id: UUID
    relation: Relation


class RevokeRequest(Request):
    reason: Text


class LinkOut(BaseModel):
    target_id: UUID
    relation: str
    linked_by: str
    linked_at: datetime


class InboundLinkOut(BaseModel):
    identifier_id: UUID
    relation: str
    linked_by: str
    linked_at: datetime


class IdentifierOut(BaseModel):
    id: UUID
    kind: str
    category: str
    scheme: str
    natural_key_hash: str
    city: str
    status: str
    has_attributes: bool
    registered_by: str
    registered_at: datetime
    revoked_reason: str | None
    updated_at: datetime
    version: int


class IdentifierDetail(IdentifierOut):
    links: list[LinkOut]
    linked_from: list[InboundLinkOut]


@router.post("", status_code=201)
async def register_identifier(body: IdentifierCreate, p: CurrentIdentity,
                              gateway: LedgerDep) -> CommandResult:
    """RegisterIdentifier (department, city admin): the id is derived from the
    scheme and the natural-key hash."""
    return await submit(gateway, p, "RegisterIdentifier",
                        body.model_dump(mode="json", exclude_none=True))


@router.post("/{identifier_id}/links", status_code=201)
async def link_identifier(identifier_id: UUID, body: LinkCreate, p: CurrentIdentity,
                          gateway: LedgerDep) -> CommandResult:
    """LinkIdentifier: a physical (attached/belongs/contains) or business
    (organisation/person) link; an object is active once it has one of each."""
    return await submit(gateway, p, "LinkIdentifier", {
        "identifier_id": str(identifier_id), **body.model_dump(mode="json")})


@router.post("/{identifier_id}/revoke")
async def revoke_identifier(identifier_id: UUID, body: RevokeRequest,
                            p: CurrentIdentity, gateway: LedgerDep) -> CommandResult:
    """RevokeIdentifier (department, city admin of the identifier's city)."""
    return await submit(gateway, p, "RevokeIdentifier", {
        "identifier_id": str(identifier_id), "reason": body.reason})


@router.get("")
async def list_identifiers(p: CurrentIdentity, read: ReadDB, page: PageDep,
                           city: Name | None = None, kind: Kind | None = None,
                           status: Status | None = None,
                           scheme: Name | None = None) -> Page[IdentifierOut]:
    """Identifiers, newest first; non-center roles see their own city only."""
    where = (Where().eq("city", scope_city(p, city)).eq("kind", kind)
             .eq("status", status).eq("scheme", scheme))
    return Page[IdentifierOut].of(
        await read(queries.identifiers, where, page.limit, page.offset))


@router.get("/{identifier_id}")
async def get_identifier(identifier_id: UUID, p: CurrentIdentity,
                         read: ReadDB) -> IdentifierDetail:
    """One identifier with its links both ways."""
    row = await read.one(queries.identifier, str(identifier_id), "identifier",
                         "identifier_id")
    scope_city(p, row["city"], "identifier_id")
    return IdentifierDetail.model_validate(row)
