"""City QR code schemes (城市二维码): apply, approve or reject with the three
on-chain checks (duty, duplicate, data-sharing commitment); list and read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import COMMAND, COMMAND_ON, READ, READ_ONE
from api.schemas import CommandResult, Page, Request
from chaincode.contract import CodeType, Name, Text
from projections import queries
from projections.queries import Where

SchemeStatus = Literal["applied", "approved", "rejected"]
router = APIRouter(prefix="/api/code-schemes", tags=["code schemes"])


class CodeSchemeCreate(Request):
    application_name: Name
    code_type: CodeType
    scope: Name
    data_sharing_commitment: bool


class RejectRequest(Request):
    reason: Text


class Checks(BaseModel):
    duty: bool
    duplicate: bool
    sharing: bool


class CodeSchemeOut(BaseModel):
    id: UUID
    city: str
    department: str
    application_name: str
    code_type: str
    scope: str
    data_sharing_commitment: bool
    status: str
    checks: Checks | None
    applied_by: str
    applied_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    version: int


@router.post("", status_code=201, responses=COMMAND)
async def apply_code_scheme(body: CodeSchemeCreate,
                            commands: CommandsDep) -> CommandResult:
    """ApplyCodeScheme (department): the caller's registered department applies."""
    return await commands.submit("ApplyCodeScheme", body.model_dump(mode="json"))


@router.post("/{scheme_id}/approve", responses=COMMAND_ON)
async def approve_code_scheme(scheme_id: UUID,
                              commands: CommandsDep) -> CommandResult:
    """ApproveCodeScheme (the scheme city's admin or the center); refused with
    409 if a check fails."""
    return await commands.submit("ApproveCodeScheme", {"scheme_id": str(scheme_id)})


@router.post("/{scheme_id}/reject", responses=COMMAND_ON)
async def reject_code_scheme(scheme_id: UUID, body: RejectRequest,
                             commands: CommandsDep) -> CommandResult:
    """RejectCodeScheme (the scheme city's admin or the center)."""
    return await commands.submit("RejectCodeScheme", {
        "scheme_id": str(scheme_id), "reason": body.reason})


@router.get("", responses=READ)
async def list_code_schemes(p: CurrentIdentity, read: ReadDB, page: PageDep,
                            city: Name | None = None, department: Name | None = None,
                            status: SchemeStatus | None = None,
                            code_type: CodeType | None = None) -> Page[CodeSchemeOut]:
    """Code schemes, newest first."""
    where = (Where().eq("city", scope_city(p, city)).eq("department", department)
             .eq("status", status).eq("code_type", code_type))
    return Page[CodeSchemeOut].of(
        await read(queries.code_schemes, where, page.limit, page.offset))


@router.get("/{scheme_id}", responses=READ_ONE)
async def get_code_scheme(scheme_id: UUID, p: CurrentIdentity,
                          read: ReadDB) -> CodeSchemeOut:
    row = await read.one(queries.code_scheme, str(scheme_id), "code scheme",
                         "scheme_id")
    scope_city(p, row["city"], "scheme_id")
    return CodeSchemeOut.model_validate(row)
