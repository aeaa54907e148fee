"""Departments and city QR-code schemes (城市二维码): applications and the
center's or city's decision with the three checks."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import Field

from chaincode.domain import CodeScheme, Department, scheme_checks
from chaincode.errors import Conflict, Unauthorized
from chaincode.identity import Role
from chaincode.registry import (
    QUERIES,
    Args,
    CodeType,
    Context,
    IdArgs,
    Name,
    Text,
    command,
    getter,
    query,
    state_of,
)


class RegisterDepartmentArgs(Args):
    code: Name
    name: Text
    duties: Annotated[list[CodeType], Field(min_length=1, max_length=64)]


class ApplyCodeSchemeArgs(Args):
    application_name: Name
    code_type: CodeType
    scope: Name
    data_sharing_commitment: bool


class ApproveCodeSchemeArgs(Args):
    scheme_id: UUID


class RejectCodeSchemeArgs(Args):
    scheme_id: UUID
    reason: Text



class DepartmentQueryArgs(Args):
    city: Name
    code: Name


# ----------------------------------------------------------------- code schemes
def _cover_key(code_type: str, scope: str) -> str:
    return f"cover~{code_type}~{scope}"


@command("RegisterDepartment", RegisterDepartmentArgs, Role.CITY_ADMIN)
def register_department(ctx: Context, a: RegisterDepartmentArgs) -> dict[str, Any]:
    if ctx.session.exists(Department.create_id(ctx.caller.city, a.code)):
        raise Conflict(f"department {a.code} of {ctx.caller.city} is already "
                       "registered", field="code")
    dept = Department(city=ctx.caller.city, code=a.code, name=a.name,
                      duties=sorted(set(a.duties)))
    ctx.session.save(dept)
    return {"id": str(dept.id)}


@command("ApplyCodeScheme", ApplyCodeSchemeArgs, Role.DEPARTMENT)
def apply_code_scheme(ctx: Context, a: ApplyCodeSchemeArgs) -> dict[str, Any]:
    # The dispatcher has checked that the department is registered.
    city, dept = ctx.caller.city, str(ctx.caller.department)
    if ctx.session.exists(CodeScheme.create_id(city, dept, a.application_name)):
        raise Conflict(f"{dept} already applied for {a.application_name}",
                       field="application_name")
    scheme = CodeScheme(city=city, department=dept,
                        application_name=a.application_name, code_type=a.code_type,
                        scope=a.scope,
                        data_sharing_commitment=a.data_sharing_commitment,
                        applied_by=str(ctx.caller))
    ctx.session.save(scheme)
    return {"id": str(scheme.id), "status": scheme.status}


def _decide(ctx: Context, scheme_id: UUID) -> tuple[CodeScheme, dict[str, bool]]:
    scheme: CodeScheme = ctx.session.get(scheme_id, CodeScheme, "code scheme",
                                         "scheme_id")
    if not (ctx.caller.is_center or (ctx.caller.role is Role.CITY_ADMIN
                                     and ctx.caller.city == scheme.city)):
        raise Unauthorized(f"only {scheme.city}'s city admin or the center may "
                           "decide this code scheme")
    dept_id = Department.create_id(scheme.city, scheme.department)
    dept = (ctx.session.get(dept_id, Department, "department")
            if ctx.session.exists(dept_id) else None)
    cover = ctx.stub.get_state(_cover_key(scheme.code_type, scheme.scope))
    checks = scheme_checks(dept, scheme.code_type,
                           cover.decode() if cover else None,
                           scheme.data_sharing_commitment)
    return scheme, checks


@command("ApproveCodeScheme", ApproveCodeSchemeArgs, Role.CITY_ADMIN,
         Role.CENTER_ADMIN)
def approve_code_scheme(ctx: Context, a: ApproveCodeSchemeArgs) -> dict[str, Any]:
    scheme, checks = _decide(ctx, a.scheme_id)
    scheme.approve(checks, str(ctx.caller))
    ctx.stub.put_state(_cover_key(scheme.code_type, scheme.scope),
                       str(scheme.id).encode())
    ctx.session.save(scheme)
    return {"id": str(scheme.id), "status": scheme.status, "checks": checks}


@command("RejectCodeScheme", RejectCodeSchemeArgs, Role.CITY_ADMIN,
         Role.CENTER_ADMIN)
def reject_code_scheme(ctx: Context, a: RejectCodeSchemeArgs) -> dict[str, Any]:
    scheme, checks = _decide(ctx, a.scheme_id)
    scheme.reject(checks, a.reason, str(ctx.caller))
    ctx.session.save(scheme)
    return {"id": str(scheme.id), "status": scheme.status, "checks": checks}



QUERIES["GetCodeScheme"] = (IdArgs, getter(CodeScheme, "code scheme"))


@query("GetDepartment", DepartmentQueryArgs)
def get_department(ctx: Context, a: DepartmentQueryArgs) -> dict[str, Any]:
    return state_of(ctx.session.get(Department.create_id(a.city, a.code), Department,
                                  "department"))


