"""Unified identifiers (统一基础标识): people, organisations, objects and places,
registered, linked and revoked by a city's departments."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from chaincode.domain import Identifier
from chaincode.errors import Conflict
from chaincode.identity import Role
from chaincode.recorder import derive_id
from chaincode.registry import (
    QUERIES,
    Args,
    Ciphertext,
    Context,
    Hash,
    IdArgs,
    Name,
    Text,
    command,
    getter,
    require_city,
)


class RegisterIdentifierArgs(Args):
    kind: Literal["person", "organisation", "object", "place"]
    category: Literal["identity", "spatiotemporal"]
    scheme: Name
    natural_key_hash: Hash
    attributes: Ciphertext | None = None


class LinkIdentifierArgs(Args):
    identifier_id: UUID
    target_id: UUID
    relation: Literal["attached", "belongs", "contains", "organisation", "person"]


class RevokeIdentifierArgs(Args):
    identifier_id: UUID
    reason: Text


# ------------------------------------------------------------------ identifiers
@command("RegisterIdentifier", RegisterIdentifierArgs, Role.DEPARTMENT,
         Role.CITY_ADMIN)
def register_identifier(ctx: Context, a: RegisterIdentifierArgs) -> dict[str, Any]:
    if ctx.session.exists(Identifier.create_id(a.scheme, a.natural_key_hash)):
        raise Conflict(f"scheme {a.scheme} already has an identifier with this "
                       "natural-key hash", field="natural_key_hash")
    ident = Identifier(kind=a.kind, category=a.category, scheme=a.scheme,
                       natural_key_hash=a.natural_key_hash,
                       attributes=a.attributes, city=ctx.caller.city,
                       registered_by=str(ctx.caller))
    ctx.session.save(ident)
    return {"id": str(ident.id), "status": ident.status}


@command("LinkIdentifier", LinkIdentifierArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def link_identifier(ctx: Context, a: LinkIdentifierArgs) -> dict[str, Any]:
    ident = ctx.session.get(a.identifier_id, Identifier, "identifier",
                            "identifier_id")
    require_city(ctx.caller, ident.city, "link this identifier")
    target = ctx.session.get(a.target_id, Identifier, "identifier", "target_id")
    ident.link_to(target, a.relation, str(ctx.caller))
    ctx.session.save(ident)
    return {"id": str(ident.id), "status": ident.status}


@command("RevokeIdentifier", RevokeIdentifierArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def revoke_identifier(ctx: Context, a: RevokeIdentifierArgs) -> dict[str, Any]:
    ident = ctx.session.get(a.identifier_id, Identifier, "identifier",
                            "identifier_id")
    require_city(ctx.caller, ident.city, "revoke this identifier")
    ident.revoke(a.reason, str(ctx.caller))
    ctx.session.save(ident)
    return {"id": str(ident.id), "status": ident.status}


def derive_identifier_id(scheme: str, natural_key_hash: str) -> str:
    """Clients use this to know an identifier's id before registering it."""
    return str(derive_id("identifier", scheme, natural_key_hash))


QUERIES["GetIdentifier"] = (IdArgs, getter(Identifier, "identifier"))

