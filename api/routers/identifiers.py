"""Unified identifiers (统一基础标识): register, link, revoke; list and read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import COMMAND, COMMAND_ON, READ, READ_ONE
from api.schemas import CommandResult, Page, Request
from chaincode.contract import Ciphertext, Hash, Name, Text
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/identifiers", tags=["identifiers"])
Kind = Literal["person", "organisation", "object", "place"]
Relation = Literal["attached", "belongs", "contains", "organisation", "person"]
Status = Literal["pending", "active", "revoked"]


class IdentifierCreate(Request):
    kind: Kind
    category: Literal["identity", "spatiotemporal"]
    scheme: Name
    natural_key_hash: Hash = Field(description="hex SM3 of the natural key")
    attributes: Ciphertext | None = Field(None, description="base64 SM4 "
                                          "ciphertext made by the client")


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


@router.post("", status_code=201, responses=COMMAND)
async def register_identifier(body: IdentifierCreate,
                              commands: CommandsDep) -> CommandResult:
    """RegisterIdentifier (department, city admin): the id is derived from the
    scheme and the natural-key hash."""
    return await commands.submit("RegisterIdentifier",
                                 body.model_dump(mode="json", exclude_none=True))


@router.post("/{identifier_id}/links", status_code=201, responses=COMMAND_ON)
async def link_identifier(identifier_id: UUID, body: LinkCreate,
                          commands: CommandsDep) -> CommandResult:
    """LinkIdentifier: a physical (attached/belongs/contains) or business
    (organisation/person) link; an object is active once it has one of each."""
    return await commands.submit("LinkIdentifier", {
        "identifier_id": str(identifier_id), **body.model_dump(mode="json")})


@router.post("/{identifier_id}/revoke", responses=COMMAND_ON)
async def revoke_identifier(identifier_id: UUID, body: RevokeRequest,
                            commands: CommandsDep) -> CommandResult:
    """RevokeIdentifier (department, city admin of the identifier's city)."""
    return await commands.submit("RevokeIdentifier", {
        "identifier_id": str(identifier_id), "reason": body.reason})


@router.get("", responses=READ)
async def list_identifiers(p: CurrentIdentity, read: ReadDB, page: PageDep,
                           city: Name | None = None, kind: Kind | None = None,
                           status: Status | None = None,
                           scheme: Name | None = None) -> Page[IdentifierOut]:
    """Identifiers, newest first; non-center roles see their own city only."""
    where = (Where().eq("city", scope_city(p, city)).eq("kind", kind)
             .eq("status", status).eq("scheme", scheme))
    return Page[IdentifierOut].of(
        await read(queries.identifiers, where, page.limit, page.offset))


@router.get("/{identifier_id}", responses=READ_ONE)
async def get_identifier(identifier_id: UUID, p: CurrentIdentity,
                         read: ReadDB) -> IdentifierDetail:
    """One identifier with its links both ways."""
    row = await read.one(queries.identifier, str(identifier_id), "identifier",
                         "identifier_id")
    scope_city(p, row["city"], "identifier_id")
    return IdentifierDetail.model_validate(row)
