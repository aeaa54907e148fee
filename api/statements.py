"""A settlement statement (结算单) as a person reads it: CSV for a spreadsheet,
PDF for the file. Both render the contract's canonical statement (JSON), whose
SM3 is on chain and printed on each."""

from __future__ import annotations

import csv
import io
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

FONT = "STSong-Light"  # Adobe's CID font for Simplified Chinese; no file needed
PAIR_COLUMNS = ("acquirer_city", "issuer_city", "records", "gross_fen",
                "acquirer_fee_fen", "issuer_fee_fen", "net_fen")


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals, exactly (no float)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def _summary(statement: dict[str, Any], sm3: str,
             settlement: dict[str, Any] | None) -> list[tuple[str, str]]:
    status = settlement["status"] if settlement else "pending"
    rows = [("business_day", statement["business_day"]), ("city", statement["city"]),
            ("clearing_run", statement["clearing_run"]),
            ("gross_fen", str(statement["gross_fen"])),
            ("fees_fen", str(statement["fees_fen"])),
            ("position_fen", str(statement["position_fen"])),
            ("flagged_records", str(statement["flagged_records"])),
            ("confirm_by", statement["confirm_by"]), ("statement_sm3", sm3),
            ("status", status)]
    if settlement and settlement.get("payment_reference"):
        rows.append(("payment_reference", settlement["payment_reference"]))
    return rows


def to_csv(statement: dict[str, Any], sm3: str,
           settlement: dict[str, Any] | None) -> str:
    """The summary as ``field,value`` lines, a blank line, then one line per
    pair of cities (amounts in fen), then the adjustments."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("field", "value"))
    w.writerows(_summary(statement, sm3, settlement))
    w.writerow(())
    w.writerow(PAIR_COLUMNS)
    for p in statement["pairs"]:
        w.writerow([p[c] for c in PAIR_COLUMNS])
    if statement["adjustments"]:
        w.writerow(())
        w.writerow(("adjustment_batch", "original_day", "acquirer_city", "records",
                    "gross_fen", "fees_fen"))
        for a in statement["adjustments"]:
            w.writerow((a["batch_id"], a["business_day"], a["acquirer_city"],
                        a["records"], a["gross_fen"], a["fees_fen"]))
    return out.getvalue()


def to_pdf(statement: dict[str, Any], sm3: str,
           settlement: dict[str, Any] | None) -> bytes:
    """An A4 statement: title, summary in yuan, pairs table, the SM3."""
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    styles = getSampleStyleSheet()
    for style in styles.byName.values():
        style.fontName = FONT  # type: ignore[attr-defined]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=f"Settlement statement "
                            f"{statement['city']} {statement['business_day']}",
                            leftMargin=15 * mm, rightMargin=15 * mm)
    money = {"gross_fen", "fees_fen", "position_fen"}
    summary = [(k.replace("_fen", " (yuan)") if k in money else k,
                yuan(int(v)) if k in money else v)
               for k, v in _summary(statement, sm3, settlement)]
    grid = TableStyle([("FONT", (0, 0), (-1, -1), FONT, 8),
                       ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                       ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)])
    pairs = [["acquirer", "issuer", "records", "gross", "acquirer fee",
              "issuer fee", "net"]]
    pairs += [[p["acquirer_city"], p["issuer_city"], str(p["records"]),
               *(yuan(p[c]) for c in PAIR_COLUMNS[3:])] for p in statement["pairs"]]
    story = [
        Paragraph(f"清分结算单 Settlement statement — {statement['city']}, "
                  f"{statement['business_day']}", styles["Title"]),
        Table(summary, colWidths=(45 * mm, 130 * mm), style=grid), Spacer(1, 6 * mm),
        Paragraph("By pair of cities (amounts in yuan)", styles["Heading3"]),
        Table(pairs, repeatRows=1, style=grid), Spacer(1, 6 * mm),
        Paragraph("The statement is the canonical JSON document whose SM3 is "
                  "above and on the ledger; the city confirms it with its SM2 "
                  "signature over that document.", styles["Normal"])]
    doc.build(story)
    return buf.getvalue()
