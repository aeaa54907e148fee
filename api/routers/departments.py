"""City departments (委办局) and the code types they are responsible for."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import COMMAND, READ, READ_ONE
from api.schemas import CommandResult, Page, Request
from chaincode.contract import CodeType, Name, Text
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/departments", tags=["departments"])


class DepartmentCreate(Request):
    code: Name
    name: Text
    duties: Annotated[list[CodeType], Field(min_length=1, max_length=64,
                                            description="code types it may issue")]


class DepartmentOut(BaseModel):
    id: UUID
    city: str
    code: str
    name: str
    duties: list[str]
    registered_at: datetime


@router.post("", status_code=201, responses=COMMAND)
async def register_department(body: DepartmentCreate,
                              commands: CommandsDep) -> CommandResult:
    """RegisterDepartment (city admin), in the admin's own city."""
    return await commands.submit("RegisterDepartment",
                                 body.model_dump(mode="json"))


@router.get("", responses=READ)
async def list_departments(p: CurrentIdentity, read: ReadDB, page: PageDep,
                           city: Name | None = None) -> Page[DepartmentOut]:
    """Departments by city and code."""
    where = Where().eq("city", scope_city(p, city))
    return Page[DepartmentOut].of(
        await read(queries.departments, where, page.limit, page.offset))


@router.get("/{department_id}", responses=READ_ONE)
async def get_department(department_id: UUID, p: CurrentIdentity,
                         read: ReadDB) -> DepartmentOut:
    row = await read.one(queries.department, str(department_id), "department",
                         "department_id")
    scope_city(p, row["city"], "department_id")
    return DepartmentOut.model_validate(row)
