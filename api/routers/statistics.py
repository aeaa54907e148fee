"""Statistics of cross-city card business, like the City Union's own: volume
and amount by day, city pair, scene and type; year on year (同比); peak days;
the ranking of cities. Each as JSON or, with ``format=csv``, a CSV file.
Read from the projections' per-day aggregates; for leaders (center admins,
auditors, city admins)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import Leader, ReadDB
from api.problems import READ, files
from api.schemas import Day
from chaincode.cards import RecordType, Scene
from chaincode.contract import Name
from projections import queries
from projections.queries import StatsFilter

router = APIRouter(prefix="/api/statistics", tags=["statistics"])
CSV_TOO = files("text/csv")
Format = Annotated[Literal["json", "csv"], Query(description="csv: a file")]
From = Annotated[Day | None, Query(alias="from")]
To = Annotated[Day | None, Query(alias="to")]


class Rows(BaseModel):
    """Statistics rows: each a group's key columns and its figures (fen)."""

    rows: list[dict[str, Any]]


def answer(rows: list[dict[str, Any]], format: str, name: str) -> Any:
    if format == "json":  # rows of plain ints and strings: no model to check
        return JSONResponse({"rows": rows})
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="{name}.csv"'})


@router.get("/volume", responses={**READ, **CSV_TOO}, response_model=Rows)
async def volume(_: Leader, read: ReadDB,
                 group: Literal["day", "pair", "scene", "type", "acquirer",
                                "issuer"] = "day",
                 day_from: From = None, day_to: To = None,
                 scene: Scene | None = None,
                 type: RecordType | None = None,
                 city: Name | None = None, format: Format = "json") -> Any:
    """Records and amounts per ``group``, for days ``from..to``, optionally one
    scene, type, or city (either side)."""
    rows = await read(queries.volume, group,
                      StatsFilter(day_from, day_to, scene, type, city))
    return answer(rows, format, f"volume-by-{group}")


@router.get("/year-on-year", responses={**READ, **CSV_TOO}, response_model=Rows)
async def year_on_year(_: Leader, read: ReadDB,
                       year: Annotated[int, Query(ge=2000, le=9999)],
                       city: Name | None = None, format: Format = "json") -> Any:
    """Per month of ``year``: records and amounts, beside the same month of the
    year before."""
    rows = await read(queries.year_on_year, year, city)
    return answer(rows, format, f"year-on-year-{year}")


@router.get("/peak-days", responses={**READ, **CSV_TOO}, response_model=Rows)
async def peak_days(_: Leader, read: ReadDB, day_from: From = None,
                    day_to: To = None,
                    limit: Annotated[int, Query(ge=1, le=366)] = 10,
                    format: Format = "json") -> Any:
    """The busiest business days by records, busiest first."""
    rows = await read(queries.peak_days, StatsFilter(day_from, day_to), limit)
    return answer(rows, format, "peak-days")


@router.get("/ranking", responses={**READ, **CSV_TOO}, response_model=Rows)
async def ranking(_: Leader, read: ReadDB,
                  by: Literal["amount_fen", "record_count"] = "amount_fen",
                  day_from: From = None, day_to: To = None,
                  format: Format = "json") -> Any:
    """Member cities ranked by cross-city business: what they acquired (cards
    of other cities used there) plus what their cards did elsewhere."""
    rows = await read(queries.ranking, by, StatsFilter(day_from, day_to))
    return answer(rows, format, f"ranking-by-{by}")
