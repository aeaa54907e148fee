"""The cockpit page (领导驾驶舱) in headless Chromium (Debian ``chromium``)
against the real server: it renders the ledger's data, loads nothing from
outside the server, and shows a new transaction without a reload; a token the
server does not accept gets the sign-in form with the reason.

Without /usr/bin/chromium or playwright the browser tests fail when CI is set
and are skipped otherwise."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from apikit import serve, stop
from fastapi.testclient import TestClient
from helpers import (
    SCENARIO_DAY,
    Clients,
    alert_args,
    call_campaign_args,
    call_records_args,
    camera_args,
    code_scan,
    identifier_args,
    issuer_keys,
    run_scenario,
    unique_hash,
    usage_args,
)

from api.tokens import TokenService
from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from workers.video.evidence import EvidenceStore, save_evidence
from workers.video.health import HealthWriter

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGE_FILES = {"/dashboard", "/static/dashboard.js", "/static/dashboard.css",
              "/static/favicon.svg", "/api/dashboard/summary"}
WAIT_MS = 10_000


def browser_missing(what: str) -> NoReturn:
    message = (f"{what}: the dashboard browser tests need Debian chromium at "
               f"{CHROMIUM} and the playwright package")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile of its own."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        browser_missing(f"no {CHROMIUM}")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 800})
        try:
            yield context
        finally:
            context.close()


def ledger_with_scenario(data_dir: Path) -> None:
    """Departments, an identifier, an approved code scheme, a disputed batch
    and a clearing run, a camera whose fire alert has its evidence on the node
    and whose watch has stopped, a batch of codes one of which Kunshan and
    Shanghai scanned three minutes apart: every panel of the page has something
    to show (but zombie codes, which need a batch 30 days old)."""
    node = EmbeddedNode(data_dir)
    try:
        ids = Clients(EmbeddedConnection(node))
        out = run_scenario(ids)
        scan_codes(ids, out["scheme"].result["id"])
        transport = ids("Kunshan", "transport")
        place = transport.submit("RegisterIdentifier", identifier_args(
            "place", "poi")).result["id"]
        camera = transport.submit("RegisterCamera", camera_args(
            place, "cam-1")).result["id"]
        frame = np.full((120, 160, 3), 90, np.uint8)
        ev = save_evidence(EvidenceStore(data_dir / "video" / "evidence"), frame,
                           [(40, 30, 50, 40)], "fire 0.87", [frame], 5.0, {})
        ids("Kunshan", "terminal").submit("RaiseVideoAlert", {
            **alert_args(camera, "fire-1"), "evidence_sm3": ev.digest})
        HealthWriter(data_dir / "video" / "health", camera, "Kunshan", "cam-1"
                     ).update({"frames": 150.0, "frame_at": 1.8e9}, "stopped")
        transport.submit("StartCallCampaign", call_campaign_args("bus-survey", 3))
        transport.submit("RecordCallOutcomes", call_records_args(
            "bus-survey", 0, ("satisfied", "busy")))
    finally:
        node.close()


MOMENT = "%Y-%m-%dT%H:%M:%SZ"
SERIAL = "c0de0001" + "ab" * 8


def scan_codes(ids: Clients[EmbeddedLedger], scheme: str) -> None:
    """A batch of 10 codes of ``scheme`` under the prefix of SERIAL; SERIAL
    scanned valid in Kunshan, a minute later refused there, and three minutes
    after the first scan valid in Shanghai (a likely copy); all on one day."""
    transport = ids("Kunshan", "transport")
    url = transport.submit("FileGuideUrl", {
        "scheme_id": scheme, "url": "https://code.kunshan.example/metro"}
        ).result["id"]
    ids("Kunshan", "admin").submit("ApproveGuideUrl", {"url_id": url})
    now = datetime.now(UTC).replace(microsecond=0)
    transport.submit("IssueCodeBatch", {
        "scheme_id": scheme, "guide_url_id": url,
        "signer_fingerprint": issuer_keys(ids).institution[1].fingerprint,
        "count": 10, "not_before": now.strftime(MOMENT),
        "not_after": (now + timedelta(days=30)).strftime(MOMENT),
        "merkle_root": unique_hash(), "serial_prefix": SERIAL[:8]})
    first = max(now - timedelta(minutes=5), now.replace(hour=0, minute=0, second=0))
    ids("Kunshan", "terminal").submit("ReportCodeUsage", usage_args([
        code_scan(scheme, SERIAL, at=first.strftime(MOMENT)),
        code_scan(scheme, at=(first + timedelta(minutes=1)).strftime(MOMENT),
                  result="refused", reason="expired")]))
    ids("Shanghai", "terminal").submit("ReportCodeUsage", usage_args([
        code_scan(scheme, SERIAL, at=(first + timedelta(minutes=3)).strftime(
            MOMENT))]))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir) of ``cityunion serve`` on the scenario's ledger."""
    data_dir = tmp_path_factory.mktemp("dashboard") / "node"
    ledger_with_scenario(data_dir)
    proc, url = serve(data_dir)
    try:
        yield url, data_dir
    finally:
        stop(proc)


def token(data_dir: Path, city: str, role: str, department: str | None = None
          ) -> str:
    """A token of the server's node (its key is in the data dir)."""
    return TokenService(data_dir).issue(city, role, department)[1]


class Watch:
    """What a page does: every URL it requests, and every script error and
    console error it meets."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.loads = 0
        context.on("request", lambda r: self.urls.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("console", self._console)
        page.on("load", self._loaded)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _loaded(self, _: Page) -> None:
        self.loads += 1

    def paths(self, base: str) -> set[str]:
        """The paths requested; asserts every request went to ``base`` (or
        to a blob: URL of its origin: data the page already holds)."""
        origin = urlsplit(base)
        urls = [u for u in self.urls if not u.startswith(f"blob:{base}/")]
        outside = [u for u in urls
                   if urlsplit(u)[:2] != (origin.scheme, origin.netloc)]
        assert not outside, f"the page requested outside the server: {outside}"
        return {urlsplit(u).path for u in urls}


def png_rows(data: bytes) -> tuple[int, int, set[bytes]]:
    """(width, height, the distinct filtered rows) of an 8-bit PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    stride = 1 + width * (3 if colour == 2 else 4)
    raw = zlib.decompress(idat)
    assert len(raw) == stride * height
    return width, height, {raw[i:i + stride] for i in range(0, len(raw), stride)}


def assert_picture(path: Path) -> None:
    """A screenshot with something on it: a single-colour image filters to a
    handful of distinct rows (one per filter type) whatever its size."""
    data = path.read_bytes()
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes"
    width, height, rows = png_rows(data)
    assert width >= 1000 and height >= 800, (width, height)
    assert len(rows) > 50, f"screenshot looks blank: {len(rows)} distinct rows"


def ledger_height(url: str, admin: str) -> int:
    r = httpx.get(f"{url}/api/projections",
                  headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text
    return int(r.json()["ledger_height"])


def wait_for_block(page: Page, number: int, also: str = "true") -> None:
    """Wait until the page shows block ``number`` as the latest (and the ledger
    height after it) and the JavaScript condition ``also`` holds."""
    page.wait_for_function(f"""() =>
        document.body.dataset.height === '{number + 1}'
        && document.querySelector('#blocks tr:nth-child(2) td')
             ?.textContent === '{number}'
        && ({also})""", timeout=WAIT_MS)


def cells(page: Page, table: str) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        f"#{table} tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    return rows


def test_page_and_files_are_served_with_a_local_only_policy(
        client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for path in PAGE_FILES - {"/dashboard", "/api/dashboard/summary"}:
        assert path in page.text
        assert client.get(path).status_code == 200, path
    assert client.get("/static/dashboard.js").headers["content-type"].endswith(
        "javascript; charset=utf-8")
    assert client.get("/static/nothing.js").status_code == 404
    assert client.get("/api/dashboard/summary").status_code == 401
    assert "/dashboard" not in client.get("/openapi.json").json()["paths"]


def test_dashboard_shows_the_ledger_and_a_new_transaction_without_reload(
        browser: BrowserContext, server: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = server
    page = browser.new_page()
    watch = Watch(browser, page)
    admin = token(data_dir, "Center", "center_admin")
    height = ledger_height(url, admin)
    response = page.goto(f"{url}/dashboard#token={admin}")
    assert response is not None and response.ok
    assert response.headers["content-security-policy"].startswith(
        "default-src 'self'")
    wait_for_block(page, height - 1, """
        document.querySelectorAll('#volume rect').length === 1
        && document.querySelectorAll('#positions rect').length === 3
        && document.querySelector('#identifiers').textContent.includes('person')
        && document.querySelector('#schemes').textContent.includes('approved')""")
    assert "token" not in page.url  # taken out of the address bar
    assert page.is_hidden("#login")
    assert cells(page, "flows") == [["acquirer \\ issuer", "Shanghai", "Taicang"],
                                    ["Kunshan", "2.02\n2 records",
                                     "2.04\n2 records"]]
    assert sorted(page.eval_on_selector_all(
        "#positions rect", "rs => rs.map(r => Number(r.dataset.value))")) == [
        -204, -102, 306]
    assert "1 disputed excluded" in page.inner_text("#clearing-note")
    # the scenario's day was cleared, Kunshan confirmed: the others overdue
    assert cells(page, "settlements") == [
        ["day", "pending", "confirmed", "paid", "overdue"],
        [SCENARIO_DAY, "2", "1", "0", "2"]]
    assert page.inner_text("#settlement-note") == (
        "Open disputes: 0 · blacklisted cards: 1")
    assert cells(page, "ranking") == [["#", "city", "records", "yuan"],
                                      ["1", "Kunshan", "4", "4.06"],
                                      ["2", "Taicang", "2", "2.04"],
                                      ["3", "Shanghai", "2", "2.02"]]
    assert page.inner_text("#peak-note") == (
        f"Peak days: {SCENARIO_DAY} (4 records)")
    assert cells(page, "risk") == [["kind", "alerts", "latest day"], ["no data yet"]]
    assert cells(page, "schemes")[1:] == [["approved", "1"]]
    page.wait_for_function("""() => document.querySelector('#qr-copies')
        .textContent.includes('Shanghai')""", timeout=WAIT_MS)
    today = datetime.now(UTC).date().isoformat()
    assert cells(page, "qr-daily") == [["day", "Kunshan", "Shanghai"],
                                       [today, "1\n1 refused", "1\n0 refused"]]
    assert cells(page, "qr-copies") == [["code", "scanned in", "day"],
                                        [f"{SERIAL[:12]}…", "Shanghai · Kunshan",
                                         today]]
    # the batch is today's: no batch is old enough to hold zombie codes yet
    assert cells(page, "qr-zombies") == [["batch", "issued", "scanned", "zombie"],
                                         ["no data yet"]]
    assert cells(page, "identifiers")[1:] == [["person", "active", "1"],
                                              ["place", "active", "1"]]
    # the fire alert's evidence frame, fetched with the token (a blob: URL)
    page.wait_for_function("""() => [...document.querySelectorAll(
        '#video-thumbs img')].some(i => i.src.startsWith('blob:')
                                       && i.complete && i.naturalWidth === 160)""",
                           timeout=WAIT_MS)
    health = cells(page, "camera-health")
    assert health[0] == ["camera", "status", "fps", "lag", "last frame"]
    assert health[1][:3] == ["cam-1\nKunshan", "stopped", "0.0"]
    page.wait_for_function("""() => document.querySelector('#call-campaigns')
        .textContent.includes('bus-survey')""", timeout=WAIT_MS)
    assert cells(page, "call-campaigns") == [
        ["campaign", "status", "progress", "outcomes"],
        ["bus-survey\nKunshan · transport", "running", "2 / 3\n66%",
         "busy 1 · satisfied 1"]]
    blocks = cells(page, "blocks")[1:]
    assert [b[0] for b in blocks] == [str(n) for n in range(height - 1, -1, -1)][:10]
    assert {b[4] for b in blocks} == {"✓ verified"}
    assert ["ledger height", str(height)] in cells(page, "projection")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_picture(shot)

    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    department = token(data_dir, "Kunshan", "department", "transport")
    r = httpx.post(f"{url}/api/identifiers", headers={
        "Authorization": f"Bearer {department}"}, json={
        "kind": "organisation", "category": "identity", "scheme": "uscc",
        "natural_key_hash": unique_hash()})
    assert r.status_code == 201, r.text
    wait_for_block(page, r.json()["block_number"], """
        document.querySelector('#identifiers').textContent.includes('organisation')
        """)
    # The campaign's last record arrives: its progress and counts move live.
    r = httpx.post(f"{url}/api/call-campaigns/bus-survey/calls", headers={
        "Authorization": f"Bearer {department}"}, json={
        k: v for k, v in call_records_args("bus-survey", 1, ("no_answer",)).items()
        if k != "campaign"})
    assert r.status_code == 200, r.text
    wait_for_block(page, r.json()["block_number"], """
        document.querySelector('#call-campaigns').textContent.includes('3 / 3')
        """)
    assert cells(page, "call-campaigns")[1][2:] == [
        "3 / 3\n100%", "busy 1 · no_answer 1 · satisfied 1"]
    assert page.evaluate("window.loadedOnce") is True
    assert watch.loads == 1
    assert watch.paths(url) >= PAGE_FILES | {
        "/api/video-alerts", "/api/cameras/health", "/api/code-usage",
        "/api/code-usage/zombies", "/api/code-usage/copies",
        "/api/call-campaigns"}
    assert not watch.errors, watch.errors


def test_bad_token_gets_the_form_and_a_good_one_an_empty_board(
        browser: BrowserContext, tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    proc, url = serve(data_dir)
    try:
        page = browser.new_page()
        watch = Watch(browser, page)
        stranger = token(tmp_path / "other-node", "Center", "center_admin")
        page.goto(f"{url}/dashboard#token={stranger}")
        page.wait_for_selector("#login-error:not(:empty)", timeout=WAIT_MS)
        assert page.is_visible("#login") and page.is_hidden("#board")
        assert "signature does not verify" in page.inner_text("#login-error")

        # An empty ledger (the genesis block only) draws without a script error.
        auditor = token(data_dir, "Center", "auditor")
        page.fill("#token", auditor)
        page.click("button[type=submit]")
        height = ledger_height(url, auditor)
        # the code panels are drawn after the rest, copies last
        wait_for_block(page, height - 1, "document.querySelector('#qr-copies tr')")
        assert page.is_hidden("#login") and page.is_visible("#board")
        page.wait_for_selector("#call-campaigns td.note", timeout=WAIT_MS)
        for table in ("flows", "schemes", "identifiers", "qr-daily",
                      "qr-zombies", "qr-copies", "call-campaigns"):
            assert cells(page, table)[-1] == ["no data yet"], table
        assert page.eval_on_selector_all("svg rect", "rs => rs.length") == 0
        assert "No clearing run yet." in page.inner_text("#clearing-note")
        assert [row[0] for row in cells(page, "blocks")[1:]] == ["0"]  # genesis
        watch.paths(url)
        # The one error is the browser's log line for the refused token's 401.
        assert [e for e in watch.errors if "401" not in e] == []
    finally:
        stop(proc)

